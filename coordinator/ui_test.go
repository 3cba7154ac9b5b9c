package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/ui"
	"github.com/meshnode/meshnode/internal/wire"
)

// 'meshnode admin login' gets a one-time link through the admin socket;
// it logs a browser in to the page on ui_listen, which shows the nodes.
func TestAdminLoginLinkOpensThePage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t)
	if _, err := coordinator.UILoginLink(ctx, cfg); err == nil || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Errorf("link without a coordinator: %v, want an error naming %s", err, cfg.DataDir)
	}
	r := runCoordinator(t, cfg)
	tok, err := openAdmin(t, cfg).CreateToken(ctx, coordinator.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}
	newNode(t, h).join(tok.String(), "a")

	link, err := coordinator.UILoginLink(ctx, cfg)
	if err != nil || !strings.HasPrefix(link, "http://127.0.0.1:") || !strings.Contains(link, "/login?t=") {
		t.Fatalf("link %q, %v", link, err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == ui.CookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login: %s, no session cookie", resp.Status)
	}
	base, _, _ := strings.Cut(link, "/login")
	req, _ := http.NewRequest(http.MethodGet, base+"/api/view", nil)
	req.AddCookie(cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ui.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Nodes) != 1 || v.Nodes[0].Name != "a" {
		t.Fatalf("view %+v, %v; want node a", v, err)
	}
}

func TestAdminLoginWithoutPage(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.UIListen = ""
	runCoordinator(t, cfg)
	if _, err := coordinator.UILoginLink(context.Background(), cfg); !errors.Is(err, coordinator.ErrNoUI) {
		t.Fatalf("link with ui_listen empty: %v, want ErrNoUI", err)
	}
}

// The page's view names each pair's nodes, its kind, its relay (a relay
// node by name), why it is relayed and its RTT, and lists a reporter's path
// changes.
func TestPageViewOfPaths(t *testing.T) {
	t.Parallel()
	m := newPathMesh(t)
	bob := m.b.key()
	if err := m.sa.send(wire.StreamMsg{Type: wire.MsgPaths, RelayKey: &bob, Paths: wire.AppendPathReport(nil, []wire.PathEntry{
		direct(m.b), {Peer: m.c.key(), Kind: wire.PathRelayedUDP, Via: wire.ViaRelayNode, Why: wire.WhyHardNATs},
	})}); err != nil {
		t.Fatal(err)
	}
	pathsOf := func() []string {
		v, err := coordinator.UIView(m.h.srv)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range v.Paths {
			ab := []string{p.A, p.B}
			slices.Sort(ab)
			out = append(out, fmt.Sprintf("%s-%s %s via=%s why=%s rtt=%.0f", ab[0], ab[1], p.Kind, p.Via, p.Why, p.RTTMillis))
		}
		slices.Sort(out)
		return out
	}
	want := []string{"alice-bob direct_udp via= why= rtt=3", "alice-carol relayed_udp via=bob why=hard_nats rtt=0"}
	eventually(t, func() bool { return slices.Equal(pathsOf(), want) }, "alice's paths in the view")

	m.report(t, m.sa, wire.PathEntry{Peer: bob, Kind: wire.PathRelayedTCP, Via: wire.ViaCoordinator, Why: wire.WhyUDPBlocked})
	eventually(t, func() bool {
		v, err := coordinator.UIView(m.h.srv)
		return err == nil && len(v.Changes) == 1 && v.Changes[0] == ui.PathChange{At: v.Changes[0].At, Node: "alice", Peer: "bob", Was: "direct_udp", Now: "relayed_tcp"}
	}, "alice's change of path to bob in the view")
}

// What a node reports running (its version and OS) shows in the page's
// view, and stays there when it goes offline and across a restart of the
// coordinator; a node that reported none shows nothing.
func TestPageViewOfSoftware(t *testing.T) {
	t.Parallel()
	m := newPathMesh(t)
	sw := wire.Software{Version: "v1.2.3", OS: "linux/arm64"}
	if err := m.sa.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:51820"), Kind: wire.EndpointLAN}}, Software: &sw}); err != nil {
		t.Fatal(err)
	}
	softwareOf := func() map[string]wire.Software {
		v, err := coordinator.UIView(m.h.srv)
		if err != nil {
			t.Fatal(err)
		}
		return v.Software
	}
	eventually(t, func() bool { return maps.Equal(softwareOf(), map[string]wire.Software{"alice": sw}) }, "alice's version and OS in the view")

	m.sa.close()
	eventually(t, func() bool {
		nodes, err := m.h.srv.Nodes(context.Background())
		return err == nil && slices.ContainsFunc(nodes, func(n wire.Node) bool { return n.Name == "alice" && !n.Online })
	}, "alice offline")
	if got := softwareOf(); !maps.Equal(got, map[string]wire.Software{"alice": sw}) {
		t.Errorf("after alice's stream ended: %v; want her last report", got)
	}
	m.h.stop()
	m.h = start(t, m.h.cfg)
	if got := softwareOf(); !maps.Equal(got, map[string]wire.Software{"alice": sw}) {
		t.Errorf("after a restart of the coordinator: %v; want alice's last report", got)
	}
}

// The page's policy: the version in force as set, a check that lists
// every mistake by line and column (and warnings) without setting it, and
// a set that applies it with a new version, a removal, and older versions.
func TestPagePolicy(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	ctx := context.Background()
	b := coordinator.UIBackend(h.srv)
	if cur, err := b.Policy(ctx, 0); err != nil || cur != nil {
		t.Fatalf("policy before any was set: %v, %v; want none", cur, err)
	}
	if _, err := h.srv.SetPolicy(ctx, office); err != nil {
		t.Fatal(err)
	}
	c := b.CheckPolicy(ctx, "rules:\n  - from: Laptop\n    to: [tag:Office]\n")
	if c.Valid || len(c.Errors) != 2 || !strings.HasPrefix(c.Errors[0], "policy:2:11: ") || !strings.HasPrefix(c.Errors[1], "policy:3:10: ") {
		t.Errorf("check of a policy with two mistakes: %+v; want each by line:col", c)
	}
	ghost := "rules:\n  - {from: ghost, to: tag:nobody}\n"
	if c := b.CheckPolicy(ctx, ghost); !c.Valid || c.Rules != 1 || len(c.Warnings) != 2 {
		t.Errorf("check of a policy naming unknown nodes: %+v; want valid, one rule, two warnings", c)
	}
	if cur, err := b.Policy(ctx, 0); err != nil || cur.(coordinator.PolicyInfo).Version != 1 {
		t.Fatalf("checks changed the policy: %+v, %v; want version 1", cur, err)
	}
	if set, err := b.SetPolicy(ctx, ghost); err != nil || set.(coordinator.PolicyInfo).Version != 2 {
		t.Fatalf("set: %+v, %v; want version 2", set, err)
	}
	if cur, err := b.Policy(ctx, 0); err != nil || cur.(coordinator.PolicyInfo).Text != ghost {
		t.Errorf("policy after set: %+v, %v; want the new text", cur, err)
	}
	if cleared, err := b.SetPolicy(ctx, ""); err != nil || cleared.(coordinator.PolicyInfo).Version != 3 || cleared.(coordinator.PolicyInfo).Text != "" {
		t.Fatalf("clear: %+v, %v; want version 3, without text", cleared, err)
	}
	if old, err := b.Policy(ctx, 1); err != nil || old.(coordinator.PolicyInfo).Text != office {
		t.Errorf("version 1 after the clear: %+v, %v; want the first text", old, err)
	}
	if _, err := b.Policy(ctx, 7); err == nil || !strings.Contains(err.Error(), "no access policy version 7") {
		t.Errorf("version 7: %v; want an error naming it", err)
	}
}

// Coordinators on one database serve one view: the page of either shows
// the paths and the software that nodes reported to the other, and path
// changes seen by either; a node's report goes when its stream ends.
func TestPageViewAcrossCoordinators(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t, coordinator.ShortPathFlush(100*time.Millisecond))
	laptop, _, deskStream := acrossPair(t, a, b)
	sw := wire.Software{Version: "v9.9.9", OS: "darwin/arm64"}
	if err := deskStream.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.2:41820"), Kind: wire.EndpointLAN}}, Software: &sw}); err != nil {
		t.Fatal(err)
	}
	via := func(k wire.PathKind) wire.PathVia {
		if k.Relayed() {
			return wire.ViaCoordinator
		}
		return wire.ViaNone
	}
	why := func(k wire.PathKind) wire.RelayWhy {
		if k.Relayed() {
			return wire.WhyHardNATs
		}
		return wire.WhyUnknown
	}
	report := func(kind wire.PathKind) {
		t.Helper()
		if err := deskStream.send(wire.StreamMsg{Type: wire.MsgPaths, Paths: wire.AppendPathReport(nil, []wire.PathEntry{{Peer: laptop.key, Kind: kind, Via: via(kind), Why: why(kind)}})}); err != nil {
			t.Fatal(err)
		}
	}
	report(wire.PathRelayedUDP)
	viewOf := func(h *harness) ui.View {
		t.Helper()
		v, err := coordinator.UIView(h.srv)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	pathOn := func(h *harness) string {
		v := viewOf(h)
		if len(v.Paths) != 1 {
			return ""
		}
		return v.Paths[0].Kind
	}
	at := time.Now()
	crossed(t, "desk's path, reported to B, on A's page", at, func() bool { return pathOn(a) == "relayed_udp" })
	if got := viewOf(a).Software["desk"]; got != sw {
		t.Errorf("desk's software on A's page: %+v, want %+v", got, sw)
	}
	report(wire.PathDirectUDP)
	at = time.Now()
	crossed(t, "desk's change of path on A's page", at, func() bool {
		v := viewOf(a)
		return len(v.Changes) == 1 && v.Changes[0] == ui.PathChange{At: v.Changes[0].At, Node: "desk", Peer: "laptop", Was: "relayed_udp", Now: "direct_udp"} &&
			len(v.Paths) == 1 && v.Paths[0].Kind == "direct_udp"
	})
	if pathOn(b) != "direct_udp" {
		t.Errorf("B's own page: %q, want direct_udp", pathOn(b))
	}
	deskStream.close()
	eventually(t, func() bool { v := viewOf(a); return len(v.Paths) == 0 && len(v.Software) == 0 }, "desk's path and software gone from A's page with its stream")
}

// A draft is tested on the page before it is set: against the mesh's
// nodes, without touching the policy in force.
func TestPageDraftPolicyTest(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	ctx := context.Background()
	homeOffice(t, h)
	if _, err := h.srv.SetPolicy(ctx, office); err != nil {
		t.Fatal(err)
	}
	b := coordinator.UIBackend(h.srv)
	draft := office + "  - {name: phone-ssh, from: phone, to: tag:office, ports: 22, proto: tcp}\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"in force", "", "deny: phone -> nas"},
		{"the draft", draft, "allow: phone -> nas"},
	} {
		var answer string
		var err error
		if tc.text == "" {
			answer, err = b.AskPolicy(ctx, "phone", "nas:22/tcp")
		} else {
			answer, err = b.AskDraftPolicy(ctx, tc.text, "phone", "nas:22/tcp")
		}
		if err != nil || !strings.HasPrefix(answer, tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.name, answer, err, tc.want)
		}
	}
	if _, err := b.AskDraftPolicy(ctx, "rules:\n  - from: Laptop\n", "phone", "nas:22"); err == nil || !strings.Contains(err.Error(), "policy:2:") {
		t.Errorf("a draft with a mistake: %v; want its line", err)
	}
	if cur, err := h.srv.Policy(ctx, 0); err != nil || cur.Text != office {
		t.Errorf("the policy in force after draft tests: %+v, %v; want office", cur, err)
	}
}
