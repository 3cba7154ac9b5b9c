package coordinator_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// office is a home and an office: the home may reach the office web, only
// the laptop may log in there, and the phone is in no rule.
const office = `rules:
  - name: web
    from: tag:home
    to: tag:office
    ports: [443]
    proto: tcp
  - name: ssh
    from: laptop
    to: tag:office
    ports: 22
    proto: tcp
`

// homeOffice registers laptop and family (tag home), nas (tag office) and
// an untagged phone, and connects them.
func homeOffice(t *testing.T, h *harness) (nodes map[string]*node, streams map[string]*stream) {
	t.Helper()
	home := h.token(coordinator.TokenOptions{Reusable: true, Tags: []string{"home"}})
	work := h.token(coordinator.TokenOptions{Reusable: true, Tags: []string{"office"}})
	plain := h.token(coordinator.TokenOptions{})
	nodes = map[string]*node{
		"laptop": newNode(t, h).join(home, "laptop"),
		"family": newNode(t, h).join(home, "family"),
		"nas":    newNode(t, h).join(work, "nas"),
		"phone":  newNode(t, h).join(plain, "phone"),
	}
	streams = map[string]*stream{}
	for name, n := range nodes {
		streams[name] = n.connect()
	}
	return nodes, streams
}

// mapsAre waits until each stream's map holds exactly the named peers.
func mapsAre(t *testing.T, what string, streams map[string]*stream, want map[string][]string) {
	t.Helper()
	delivered(t, what, func() bool {
		for name, peers := range want {
			if !slices.Equal(streams[name].peerNames(), peers) {
				return false
			}
		}
		return true
	})
}

// filterRules is the names of the rules in a stream's filter; nil for no
// filter, "allow_all" for a filter without a policy.
func filterRules(s *stream) []string {
	f := s.accessFilter()
	switch {
	case f == nil:
		return nil
	case f.AllowAll:
		return []string{"allow_all"}
	}
	out := []string{}
	for _, r := range f.Rules {
		if !slices.Contains(out, r.Rule) {
			out = append(out, r.Rule)
		}
	}
	return out
}

// TestPolicyPushesFiltersAndMaps: setting a policy gives every connected
// node its filter, and takes from its map the nodes it may no longer see;
// changing or removing the policy, or a node's tags, does it again.
func TestPolicyPushesFiltersAndMaps(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	ctx := context.Background()
	_, streams := homeOffice(t, h)
	all := func(except string) []string {
		return slices.DeleteFunc([]string{"family", "laptop", "nas", "phone"}, func(n string) bool { return n == except })
	}
	mapsAre(t, "the open mesh", streams, map[string][]string{"laptop": all("laptop"), "family": all("family"), "nas": all("nas"), "phone": all("phone")})
	for name, s := range streams {
		if s.welcome.Filter != nil {
			t.Errorf("%s: welcome without a policy carries filter %+v", name, s.welcome.Filter)
		}
	}

	info, err := h.srv.SetPolicy(ctx, office)
	if err != nil || info.Version != 1 || len(info.Warnings) != 0 {
		t.Fatalf("SetPolicy = %+v, %v; want version 1, no warnings", info, err)
	}
	mapsAre(t, "the policy's visibility", streams, map[string][]string{
		"laptop": {"nas"}, "family": {"nas"}, "nas": {"family", "laptop"}, "phone": nil,
	})
	delivered(t, "filters", func() bool {
		return slices.Equal(filterRules(streams["laptop"]), []string{"1: web", "2: ssh"}) &&
			slices.Equal(filterRules(streams["family"]), []string{"1: web"}) &&
			slices.Equal(filterRules(streams["nas"]), []string{"1: web", "2: ssh"}) &&
			slices.Equal(filterRules(streams["phone"]), []string{})
	})
	for name, s := range streams {
		if f := s.accessFilter(); f.Version != 1 || f.Validate() != nil {
			t.Errorf("%s: filter version %d, %v; want a valid one at version 1", name, f.Version, f.Validate())
		}
	}
	if v := h.metric("meshnode_coordinator_policy_version", "", ""); v != 1 {
		t.Errorf("policy_version metric %v, want 1", v)
	}

	// Only SSH is left: the family laptop disappears from the office.
	if _, err := h.srv.SetPolicy(ctx, office[strings.Index(office, "  - name: ssh"):]+"\n"); err == nil {
		t.Fatal("a policy without its rules: key was accepted")
	}
	if _, err := h.srv.SetPolicy(ctx, "rules:\n"+office[strings.Index(office, "  - name: ssh"):]); err != nil {
		t.Fatal(err)
	}
	mapsAre(t, "a denied node's removal", streams, map[string][]string{"laptop": {"nas"}, "family": nil, "nas": {"laptop"}, "phone": nil})

	// Tagged office, the phone is reachable for SSH from the laptop.
	if _, err := h.srv.TagNode(ctx, "phone", []string{"office"}, nil); err != nil {
		t.Fatal(err)
	}
	mapsAre(t, "a tag's new visibility", streams, map[string][]string{"laptop": {"nas", "phone"}, "phone": {"laptop"}})
	delivered(t, "the tagged node's filter", func() bool { return slices.Equal(filterRules(streams["phone"]), []string{"1: ssh"}) })

	// No policy: everyone again, and filters that allow everything.
	cleared, err := h.srv.SetPolicy(ctx, "")
	if err != nil || cleared.Version != 3 {
		t.Fatalf("clearing = %+v, %v; want version 3 (the policy refused was not stored)", cleared, err)
	}
	mapsAre(t, "the open mesh again", streams, map[string][]string{"laptop": all("laptop"), "family": all("family"), "nas": all("nas"), "phone": all("phone")})
	delivered(t, "filters that allow all", func() bool {
		for _, s := range streams {
			if f := s.accessFilter(); f == nil || !f.AllowAll || f.Version != 3 {
				return false
			}
		}
		return true
	})
}

// TestPolicyWelcomeAndJoin: a node connecting under a policy is welcomed
// with its filter and only the peers it may see; a node joining later
// appears where the policy lets it, in maps and filters.
func TestPolicyWelcomeAndJoin(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	nodes, streams := homeOffice(t, h)
	if _, err := h.srv.SetPolicy(context.Background(), office); err != nil {
		t.Fatal(err)
	}
	mapsAre(t, "the policy's visibility", streams, map[string][]string{"phone": nil})
	streams["phone"].close()
	phone := nodes["phone"].connect()
	if len(phone.welcome.Peers) != 0 || phone.welcome.Filter == nil || len(phone.welcome.Filter.Rules) != 0 || phone.welcome.Filter.AllowAll {
		t.Fatalf("the phone's welcome: peers %v, filter %+v; want no peers and a filter that allows nothing", phone.welcome.Peers, phone.welcome.Filter)
	}
	streams["laptop"].close()
	laptop := nodes["laptop"].connect()
	if names := peerNamesOf(laptop.welcome.Peers); !slices.Equal(names, []string{"nas"}) || laptop.welcome.Filter.Version != 1 {
		t.Fatalf("the laptop's welcome: peers %v, filter %+v; want nas and version 1", names, laptop.welcome.Filter)
	}

	nas2 := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{"office"}}), "nas2")
	delivered(t, "a joining node", func() bool { _, ok := laptop.peer(nas2.key()); return ok })
	addr := nas2.reg.Self.Addresses[0]
	delivered(t, "the filter naming it", func() bool {
		for _, r := range laptop.accessFilter().Rules {
			if slices.Contains(r.Dst, netip.PrefixFrom(addr, 32)) {
				return true
			}
		}
		return false
	})
	if _, ok := phone.peer(nas2.key()); ok {
		t.Error("the phone, in no rule, was told of the new office node")
	}
}

func peerNamesOf(ps []wire.Node) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// TestPolicyRendezvousAndRelay: a node can't have the coordinator cue,
// or relay to, a node it may not see; a designated relay stays everyone's
// peer, so that relayed pairs still meet at it.
func TestPolicyRendezvousAndRelay(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	nodes, streams := homeOffice(t, h)
	gw := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "gw")
	streams["gw"] = gw.connect()
	if _, err := h.srv.SetPolicy(context.Background(), office); err != nil {
		t.Fatal(err)
	}
	mapsAre(t, "the policy's visibility", streams, map[string][]string{"phone": {"gw"}, "laptop": {"gw", "nas"}, "gw": {"family", "laptop", "nas", "phone"}})
	phone, laptop, nas := nodes["phone"].key(), nodes["laptop"].key(), nodes["nas"].key()
	for _, tt := range []struct {
		name     string
		from, to *node
		want     bool
	}{
		{"phone to laptop", nodes["phone"], nodes["laptop"], false},
		{"laptop to phone", nodes["laptop"], nodes["phone"], false},
		{"laptop to family", nodes["laptop"], nodes["family"], false},
		{"laptop to nas", nodes["laptop"], nodes["nas"], true},
		{"nas to laptop", nodes["nas"], nodes["laptop"], true},
		{"phone to the relay", nodes["phone"], gw, true},
	} {
		if got := coordinator.Rendezvous(h.srv, tt.from.key(), tt.to.key()); got != tt.want {
			t.Errorf("rendezvous %s: cued %v, want %v", tt.name, got, tt.want)
		}
		if got := coordinator.RelayAllows(h.srv, tt.from.key(), tt.to.key()); got != tt.want {
			t.Errorf("relay %s: allowed %v, want %v", tt.name, got, tt.want)
		}
	}
	// Requests on the stream are handled in order: once the relay has its
	// cue, the request naming the laptop was handled too, and cued no one.
	relay := gw.key()
	for _, peer := range []*crypto.PublicKey{&laptop, &nas, &relay} {
		if err := streams["phone"].send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: peer}); err != nil {
			t.Fatal(err)
		}
	}
	// The metric counts a rendezvous after its cues are sent: wait for both.
	delivered(t, "the visible pair's cue", func() bool {
		return streams["gw"].punchesFrom(phone) > 0 && h.metric("meshnode_coordinator_rendezvous_total", "", "") > 0
	})
	if got := h.metric("meshnode_coordinator_rendezvous_total", "", ""); got != 1 {
		t.Errorf("%v rendezvous performed, want 1: the phone's with the relay only", got)
	}
	if streams["laptop"].punchesFrom(phone) > 0 || streams["nas"].punchesFrom(phone) > 0 {
		t.Error("a node was cued to punch to a node it may not see")
	}
}

// TestPolicyRefusedWhenInvalid: a policy with mistakes is refused with
// every mistake by line, and the one in force stays.
func TestPolicyRefusedWhenInvalid(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	ctx := context.Background()
	if _, err := h.srv.SetPolicy(ctx, office); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ text, want string }{
		{"rules:\n  - from: Laptop\n    to: [tag:Office]\n", "policy:2:11"},
		{"rules:\n  - from: laptop\n    to: 100.88.0.0/24\n", "overlaps the mesh's own addresses"},
	} {
		_, err := h.srv.SetPolicy(ctx, tt.text)
		if !errors.Is(err, coordinator.ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SetPolicy(%q) = %v; want ErrInvalidPolicy mentioning %q", tt.text, err, tt.want)
		}
	}
	if cur, err := h.srv.Policy(ctx, 0); err != nil || cur.Version != 1 || cur.Text != office {
		t.Fatalf("the policy in force: %+v, %v; want version 1 unchanged", cur, err)
	}
	if info, err := h.srv.SetPolicy(ctx, "rules:\n  - {from: ghost, to: tag:nobody}\n"); err != nil || len(info.Warnings) != 2 {
		t.Fatalf("a policy naming unknown nodes: %+v, %v; want it set, with two warnings", info, err)
	}
}

// TestPolicySurvivesRestart: the policy is kept durably and applied to
// nodes when a restarted coordinator welcomes them; a stored policy this
// meshnode can't read stops it instead of allowing everything.
func TestPolicySurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	h := start(t, cfg)
	nodes, _ := homeOffice(t, h)
	if _, err := h.srv.SetPolicy(context.Background(), office); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h2 := start(t, cfg)
	phone := &node{t: t, h: h2, priv: nodes["phone"].priv, reg: nodes["phone"].reg}
	s := phone.connect()
	if s.welcome.Filter == nil || s.welcome.Filter.Version != 1 || len(s.welcome.Peers) != 0 {
		t.Fatalf("after a restart the phone is welcomed with filter %+v and %d peers; want version 1 and none", s.welcome.Filter, len(s.welcome.Peers))
	}
	h2.stop()

	st, err := store.Open(context.Background(), filepath.Join(cfg.DataDir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetPolicy(context.Background(), "rules: {bad: yes}\n", time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, err = coordinator.New(coordinator.Options{Config: cfg, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "stored access policy (version 2)") || !strings.Contains(err.Error(), "meshnode policy set") {
		t.Fatalf("New with a stored policy that does not parse: %v; want it refused, saying how to fix it", err)
	}
}

// TestPolicyOverAdminSocket: set, read back and clear through a running
// coordinator's admin socket.
func TestPolicyOverAdminSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	runCoordinator(t, cfg)
	ctx := context.Background()
	admin := openAdmin(t, cfg)
	if _, err := admin.Policy(ctx, 0); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("Policy before any: %v, want ErrNotFound", err)
	}
	info, err := admin.SetPolicy(ctx, office)
	if err != nil || info.Version != 1 || len(info.Warnings) != 3 {
		t.Fatalf("SetPolicy = %+v, %v; want version 1 with warnings for laptop and the two tags (no nodes yet)", info, err)
	}
	got, err := admin.Policy(ctx, 1)
	if err != nil || got.Text != office || got.Created.IsZero() {
		t.Fatalf("Policy(1) = %+v, %v", got, err)
	}
	if _, err := admin.SetPolicy(ctx, "rules:\n  - from: Laptop\n"); !errors.Is(err, coordinator.ErrInvalidPolicy) || !strings.Contains(err.Error(), "policy:2:11") {
		t.Fatalf("an invalid policy over the socket: %v", err)
	}
	if info, err := admin.SetPolicy(ctx, ""); err != nil || info.Version != 2 || info.Text != "" {
		t.Fatalf("clearing: %+v, %v", info, err)
	}
	if _, err := admin.Policy(ctx, 7); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("Policy(7): %v, want ErrNotFound", err)
	}
}
