package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/node/localapi"
)

// Ports of the policy scenario's servers on the office node.
const (
	webPort = 8080
	sshPort = 22
)

// webRule is the label the scenario's one rule counts under: its number
// and name.
const webRule = "1: home to office web"

// webPolicy lets the home machines open TCP to the office's web ports,
// and nothing else.
const webPolicy = `# The home machines browse the office web; nothing else.
rules:
  - name: home to office web
    from: [home, rogue]
    to: [office]
    ports: [80, 8080]
    proto: tcp
`

// denied is what a node's status counts against rule ("" for packets no
// rule covers).
func denied(st netlab.Status, rule string) localapi.RuleDenied {
	if rule == "" {
		return st.Policy.DeniedNoRule
	}
	for _, d := range st.Policy.Denied {
		if d.Rule == rule {
			return d
		}
	}
	return localapi.RuleDenied{}
}

// mustRefuse checks that from can't connect to addr (the SYN is dropped,
// so the attempt times out) and that the server there recorded nothing.
func mustRefuse(t *testing.T, from *netlab.Node, addr netip.AddrPort, w *netlab.Witness) {
	t.Helper()
	before := len(w.Seen())
	if err := from.Host.NS.Connect(t.Context(), addr, probeTimeout); err == nil {
		t.Fatalf("%s connected to %v, which the policy denies", from.Name, addr)
	}
	if seen := w.Seen(); len(seen) > before {
		t.Fatalf("the server on %v accepted %v, which the policy denies", addr, seen[before:])
	}
}

// mustConnect polls until from connects to addr and the server there
// records from's overlay address.
func mustConnect(t *testing.T, from *netlab.Node, addr netip.AddrPort, w *netlab.Witness) {
	t.Helper()
	want := mustStatus(t, from).Me().V4()
	err := netlab.Poll(t.Context(), routeTimeout, netlab.PollInterval, func(ctx context.Context) error {
		before := len(w.Seen())
		if err := from.Host.NS.Connect(ctx, addr, probeTimeout); err != nil {
			return err
		}
		if seen, err := w.SeenAfter(before, probeTimeout); seen != want {
			return fmt.Errorf("the server saw %v (%v), want %v", seen, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s to %v, which the policy allows: %v", from.Name, addr, err)
	}
}

// TestPolicyWebNotSSH: a policy lets home open the office's web ports but
// not SSH. Home connects to the office's web server; its SSH attempts are
// dropped by its own filter before the wire (counted out at home, never
// seen at the office). A home machine running a build whose filter passes
// everything it sends (`make unfiltered-sender`) reaches the web server
// too, and its SSH attempts reach the office, whose filter drops them and
// counts them in against the web rule. The office can't open connections
// to home, and both sides' status agrees on who reaches whom, as does
// `meshnode policy test` on the coordinator.
func TestPolicyWebNotSSH(t *testing.T) {
	e := newEnv(t)
	rogueBin := unfilteredBinary(t)
	officeSite := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	homeSite := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 2})
	office := e.node(t, officeSite.Hosts[0], "office")
	home := e.node(t, homeSite.Hosts[0], "home")
	rogue := e.startNode(t, homeSite.Hosts[1], netlab.NodeConfig{Name: "rogue", Token: e.token, ListenPort: netlab.DefaultNodePort + 1, Bin: rogueBin}, true)
	mustDirect(t, home, office)
	mustDirect(t, rogue, office)

	setPolicy(t, e, webPolicy)
	for _, n := range []*netlab.Node{office, home, rogue} {
		waitStatus(t, n, "the policy is in force", func(st netlab.Status) error {
			if !st.Policy.Active || st.Policy.Rules == 0 {
				return fmt.Errorf("policy %+v", st.Policy)
			}
			return nil
		})
	}
	for _, c := range []struct{ src, dst, want string }{
		{"home", "office:8080/tcp", "allow:"},
		{"rogue", "office:80/tcp", "allow:"},
		{"home", "office:22/tcp", "deny:"},
		{"office", "home:8080/tcp", "deny:"},
	} {
		out, err := e.coord.Policy(t.Context(), "test", c.src, c.dst)
		if err != nil || !strings.HasPrefix(out, c.want) {
			t.Errorf("policy test %s %s: %q (%v), want %s", c.src, c.dst, out, err, c.want)
		}
	}

	officeAddr, homeAddr := mustStatus(t, office).Me().V4(), mustStatus(t, home).Me().V4()
	web := netip.AddrPortFrom(officeAddr, webPort)
	ssh := netip.AddrPortFrom(officeAddr, sshPort)
	homeWeb := netip.AddrPortFrom(homeAddr, webPort)
	var ws []*netlab.Witness
	for _, s := range []struct {
		ns   *netlab.Netns
		addr netip.AddrPort
	}{{office.Host.NS, web}, {office.Host.NS, ssh}, {home.Host.NS, homeWeb}} {
		w, err := s.ns.Witness(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	webW, sshW, homeW := ws[0], ws[1], ws[2]

	// Allowed: the web, from home and from the rogue.
	mustConnect(t, home, web, webW)
	mustConnect(t, rogue, web, webW)

	// Denied by home's own filter: SSH never reaches the wire.
	mustRefuse(t, home, ssh, sshW)
	waitStatus(t, home, "home counts its SSH out against the web rule", func(st netlab.Status) error {
		if d := denied(st, webRule); d.Out == 0 {
			return fmt.Errorf("denied %+v", st.Policy.Denied)
		}
		return nil
	})
	if st := mustStatus(t, office); st.Counters["filter_denied_in"] != 0 {
		t.Errorf("the office denied %d packets in before the rogue sent any: home's filter should have kept its SSH off the wire (%+v)", st.Counters["filter_denied_in"], st.Policy.Denied)
	}

	// Denied by the receiver: the rogue's SSH leaves it and the office
	// drops it.
	mustRefuse(t, rogue, ssh, sshW)
	waitStatus(t, office, "the office counts the rogue's SSH in against the web rule", func(st netlab.Status) error {
		if d := denied(st, webRule); d.In == 0 {
			return fmt.Errorf("denied %+v", st.Policy.Denied)
		}
		return nil
	})
	rst := mustStatus(t, rogue)
	if n := rst.Counters["filter_denied_out"]; n != 0 {
		t.Errorf("the rogue's filter denied %d packets out: it runs the unfiltered-sender build and should have sent them", n)
	}
	t.Logf("the office dropped %d SSH packets from the rogue (rule %q)", denied(mustStatus(t, office), webRule).In, webRule)

	// The office's own view: it may not open connections to home.
	mustRefuse(t, office, homeWeb, homeW)
	waitStatus(t, office, "the office counts its own attempt at home out", func(st netlab.Status) error {
		if d := denied(st, ""); d.Out == 0 {
			return fmt.Errorf("denied without a rule %+v", st.Policy.DeniedNoRule)
		}
		return nil
	})
	for _, c := range []struct {
		from             *netlab.Node
		peer             string
		reach, reachedBy bool
	}{{home, "office", true, false}, {rogue, "office", true, false}, {office, "home", false, true}, {office, "rogue", false, true}} {
		p, ok := mustStatus(t, c.from).Peer(c.peer)
		if !ok || p.Reach != c.reach || p.ReachedBy != c.reachedBy {
			t.Errorf("%s's status of %s (listed %v): reach %v, reached_by %v; want %v, %v", c.from.Name, c.peer, ok, p.Reach, p.ReachedBy, c.reach, c.reachedBy)
		}
	}
	// Home and the rogue may not reach each other: neither lists the other.
	if _, ok := mustStatus(t, home).Peer("rogue"); ok {
		t.Error("home still lists the rogue as a peer: the policy gives them no rule")
	}
}

// setPolicy writes text to a file in the lab and sets it as the mesh's
// access policy.
func setPolicy(t *testing.T, e *env, text string) {
	t.Helper()
	file := filepath.Join(e.lab.Dir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coord.Policy(t.Context(), "set", file); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyAutoApprovesRoute: the policy's auto_approvers approve the
// office LAN that the office router (tagged office) advertises, with no
// `meshnode routes approve`. While the policy lets home reach only the
// router itself, home's status marks the route denied and the LAN host
// does not answer; a rule to the LAN lifts both.
func TestPolicyAutoApprovesRoute(t *testing.T) {
	e := newEnv(t)
	o := newRoutedOffice(t, e)
	lan, lanHost, h := o.lan, o.lanHost, o.home
	if err := e.coord.TagNode(t.Context(), "office-gw", "office"); err != nil {
		t.Fatal(err)
	}
	approvers := fmt.Sprintf("auto_approvers:\n  routes:\n    %s: [tag:office]\n", lan)
	setPolicy(t, e, "rules:\n  - {from: home, to: office-gw}\n"+approvers)
	waitStatus(t, h, "the route is approved, and denied to home", func(st netlab.Status) error {
		p, _ := st.Peer("office-gw")
		if !slices.Equal(p.Routes, []netip.Prefix{lan}) || !slices.Equal(p.RoutesDenied, []netip.Prefix{lan}) {
			return fmt.Errorf("office-gw's routes %v, denied %v", p.Routes, p.RoutesDenied)
		}
		return nil
	})
	if r, err := h.Host.NS.Ping(t.Context(), lanHost.Addr, 2); err == nil {
		t.Fatalf("the LAN host answered while the policy gives home no rule to it:\n%s", r.Output)
	}

	setPolicy(t, e, fmt.Sprintf("rules:\n  - {from: home, to: office-gw}\n  - {from: home, to: %s}\n", lan)+approvers)
	waitReach(t, h.Host.NS, lanHost.Addr, true)
	if p, _ := mustStatus(t, h).Peer("office-gw"); len(p.RoutesDenied) != 0 {
		t.Errorf("home's status still marks %v denied", p.RoutesDenied)
	}
}
