package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/tun"
)

// Route timing in the lab.
const (
	// routeTimeout bounds an approval or rejection reaching a peer's
	// WireGuard, its OS routes and the router's gateway: the coordinator
	// pushes within a second; the rest is polling.
	routeTimeout = 20 * time.Second
	// probeTimeout bounds one connection attempt that must fail: a SYN
	// and its first retransmission.
	probeTimeout = 2 * time.Second
	// leakProbes is how many connections, per address family, try to
	// leave while the exit node is down.
	leakProbes = 3
	// witnessPort is where the lab's internet host and LAN host listen.
	witnessPort = 8080
)

// routedOffice is an office whose router node, office-gw, advertises the
// LAN where a host runs no meshnode, and a home node with a direct path
// to the router.
type routedOffice struct {
	lan             netip.Prefix
	gwHost, lanHost *netlab.Host
	gw, home        *netlab.Node
}

func newRoutedOffice(t *testing.T, e *env) routedOffice {
	t.Helper()
	office := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 2})
	home := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	o := routedOffice{lan: office.Router.LANPrefix(), gwHost: office.Hosts[0], lanHost: office.Hosts[1]}
	o.gw = e.nodeWith(t, o.gwHost, "office-gw", "--advertise-routes", o.lan.String())
	o.home = e.node(t, home.Hosts[0], "home")
	mustDirect(t, o.home, o.gw)
	return o
}

// waitReach polls until a ping from n to addr is answered (reach), or
// until one is not.
func waitReach(t *testing.T, n *netlab.Netns, addr netip.Addr, reach bool) {
	t.Helper()
	err := netlab.Poll(t.Context(), routeTimeout, netlab.PollInterval, func(ctx context.Context) error {
		r, err := n.Ping(ctx, addr, 1)
		switch {
		case reach && err != nil:
			return fmt.Errorf("no answer: %v\n%s", err, r.Output)
		case !reach && err == nil:
			return fmt.Errorf("%v still answers", addr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ping %v from %s (want answered: %v): %v", addr, n.Name, reach, err)
	}
}

// waitStatus polls a node's status until ok accepts it.
func waitStatus(t *testing.T, n *netlab.Node, what string, ok func(netlab.Status) error) {
	t.Helper()
	err := netlab.Poll(t.Context(), routeTimeout, netlab.PollInterval, func(ctx context.Context) error {
		st, err := n.Status(ctx)
		if err != nil {
			return err
		}
		return ok(st)
	})
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, what, err)
	}
}

// osRoutes is the routing table meshnode keeps its routes in, in ns.
func osRoutes(t *testing.T, e *env, ns *netlab.Netns) string {
	t.Helper()
	var all string
	for _, family := range []string{"-4", "-6"} {
		out, err := ns.Exec(t.Context(), e.lab.Tools().IP, family, "route", "show", "table", strconv.Itoa(tun.RouteTable))
		// ip says so when a family's table has no route at all.
		if err != nil && !strings.Contains(out, "does not exist") {
			t.Fatal(err)
		}
		if err == nil {
			all += out
		}
	}
	return strings.TrimSpace(all)
}

// rules are the policy rules that consult meshnode's table, in ns.
func rules(t *testing.T, e *env, ns *netlab.Netns) string {
	t.Helper()
	var all []string
	for _, family := range []string{"-4", "-6"} {
		out, err := ns.Exec(t.Context(), e.lab.Tools().IP, family, "rule", "show")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "lookup "+strconv.Itoa(tun.RouteTable)) {
				all = append(all, line)
			}
		}
	}
	return strings.Join(all, "\n")
}

// sysctl reads a sysctl in ns.
func sysctl(t *testing.T, ns *netlab.Netns, key string) string {
	t.Helper()
	var v []byte
	err := ns.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// TestSubnetRouter: a LAN host at the office that runs no meshnode is
// reachable from a home node through the office's subnet router once the
// administrator approves the route (ping and TCP), sees the router's LAN
// address (masquerade), and is unreachable again once the route is
// rejected. Routes, rules, the router's table and its forwarding switch
// are gone afterwards.
func TestSubnetRouter(t *testing.T) {
	e := newEnv(t)
	o := newRoutedOffice(t, e)
	lan, gwHost, lanHost, gw, h := o.lan, o.gwHost, o.lanHost, o.gw, o.home

	if r, err := h.Host.NS.Ping(t.Context(), lanHost.Addr, 1); err == nil {
		t.Fatalf("the office LAN host answered before the route was approved:\n%s", r.Output)
	}
	if _, err := e.coord.Routes(t.Context(), "approve", "office-gw", lan.String()); err != nil {
		t.Fatal(err)
	}
	approved := time.Now()
	waitReach(t, h.Host.NS, lanHost.Addr, true)
	t.Logf("the office LAN host answers %.1f s after the approval", time.Since(approved).Seconds())
	r, err := h.Host.NS.Ping(t.Context(), lanHost.Addr, 3)
	if err != nil || r.Received != 3 {
		t.Fatalf("ping through the subnet router: %d/%d, %v", r.Received, r.Sent, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	res, err := netlab.Transfer{From: h.Host.NS, To: lanHost.NS, Addr: lanHost.Addr, Size: 1 << 20, StallTimeout: stallTimeout}.Run(ctx)
	if err != nil {
		t.Fatalf("TCP to the office LAN host: %v", err)
	}
	t.Logf("TCP to the office LAN host: %d bytes at %.0f Mbit/s", res.Bytes, res.Rate()*8/1e6)
	w, err := lanHost.NS.Witness(netip.AddrPortFrom(lanHost.Addr, witnessPort))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := h.Host.NS.Connect(t.Context(), netip.AddrPortFrom(lanHost.Addr, witnessPort), probeTimeout); err != nil {
		t.Fatal(err)
	}
	if seen, err := w.SeenAfter(0, probeTimeout); seen != gwHost.Addr {
		t.Errorf("the LAN host saw the connection from %v (%v), want the router's LAN address %v (masquerade)", seen, err, gwHost.Addr)
	}
	st := mustStatus(t, h)
	if !slices.Contains(st.Routes.Via, localapi.PeerRoute{Prefix: lan, Peer: "office-gw", State: localapi.RouteRouted}) {
		t.Errorf("home's status shows routes %+v, want %v via office-gw", st.Routes.Via, lan)
	}
	gst := mustStatus(t, gw)
	if !slices.Equal(gst.Routes.Serving, []netip.Prefix{lan}) || !slices.Equal(gst.Routes.Primary, []netip.Prefix{lan}) || gst.Routes.GatewayError != "" {
		t.Errorf("office-gw's status: serving %v, primary %v, gateway error %q", gst.Routes.Serving, gst.Routes.Primary, gst.Routes.GatewayError)
	}
	if v := sysctl(t, gwHost.NS, "net.ipv4.ip_forward"); v != "1" {
		t.Errorf("office-gw's ip_forward %s while serving", v)
	}

	if _, err := e.coord.Routes(t.Context(), "reject", "office-gw", lan.String()); err != nil {
		t.Fatal(err)
	}
	rejected := time.Now()
	waitReach(t, h.Host.NS, lanHost.Addr, false)
	t.Logf("the office LAN host stops answering %.1f s after the rejection", time.Since(rejected).Seconds())
	waitStatus(t, h, "the route is gone", func(st netlab.Status) error {
		if len(st.Routes.Via) != 0 {
			return fmt.Errorf("routes %+v", st.Routes.Via)
		}
		return nil
	})
	if got := osRoutes(t, e, h.Host.NS); got != "" {
		t.Errorf("home's OS still routes after the rejection:\n%s", got)
	}
	waitStatus(t, gw, "office-gw stops serving", func(st netlab.Status) error {
		if len(st.Routes.Serving) != 0 {
			return fmt.Errorf("serving %v", st.Routes.Serving)
		}
		return nil
	})
	if _, err := gwHost.NS.Exec(t.Context(), e.lab.Tools().NFT, "list", "table", "inet", "meshnode"); err == nil {
		t.Error("office-gw's nftables table stays after the rejection")
	}
	if v := sysctl(t, gwHost.NS, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("office-gw's ip_forward %s after the rejection, want 0 as before", v)
	}

	// Approved again, then both go down: every rule, route and table goes.
	if _, err := e.coord.Routes(t.Context(), "approve", "office-gw", lan.String()); err != nil {
		t.Fatal(err)
	}
	waitReach(t, h.Host.NS, lanHost.Addr, true)
	for _, n := range []*netlab.Node{h, gw} {
		if err := n.Down(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := rules(t, e, h.Host.NS) + osRoutes(t, e, h.Host.NS); got != "" {
		t.Errorf("home left rules or routes after down:\n%s", got)
	}
	if _, err := gwHost.NS.Exec(t.Context(), e.lab.Tools().NFT, "list", "table", "inet", "meshnode"); err == nil {
		t.Error("office-gw left its nftables table after down")
	}
	if v := sysctl(t, gwHost.NS, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("office-gw left ip_forward %s after down, want 0 as before", v)
	}
}

// exitProbe connects from home to the internet host over IPv4 and IPv6,
// and returns the source addresses the host saw (invalid for an attempt
// that failed) and the errors.
func exitProbe(t *testing.T, from *netlab.Netns, to *netlab.Host, w4, w6 *netlab.Witness) (v4, v6 netip.Addr, err error) {
	t.Helper()
	var errs []error
	for _, c := range []struct {
		addr netip.Addr
		w    *netlab.Witness
		seen *netip.Addr
	}{{to.Addr, w4, &v4}, {to.Addr6, w6, &v6}} {
		before := len(c.w.Seen())
		if err := from.Connect(t.Context(), netip.AddrPortFrom(c.addr, witnessPort), probeTimeout); err != nil {
			errs = append(errs, err)
			continue
		}
		seen, err := c.w.SeenAfter(before, probeTimeout)
		*c.seen = seen
		errs = append(errs, err)
	}
	return v4, v6, errors.Join(errs...)
}

// waitExit polls until both families reach the internet host from the
// addresses want4 and want6.
func waitExit(t *testing.T, what string, from *netlab.Netns, to *netlab.Host, w4, w6 *netlab.Witness, want4, want6 netip.Addr) {
	t.Helper()
	err := netlab.Poll(t.Context(), routeTimeout, netlab.PollInterval, func(context.Context) error {
		v4, v6, err := exitProbe(t, from, to, w4, w6)
		if err != nil {
			return err
		}
		if v4 != want4 || v6 != want6 {
			return fmt.Errorf("the internet host saw %v and %v, want %v and %v", v4, v6, want4, want6)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: the internet host sees %v and %v", what, want4, want6)
}

// noLeak checks that attempts from home to the internet host fail, and
// that nothing from home's own public addresses arrived there.
func noLeak(t *testing.T, what string, h *netlab.Node, to *netlab.Host, w4, w6 *netlab.Witness, count *netlab.SourceCounter) {
	t.Helper()
	for range leakProbes {
		if v4, v6, err := exitProbe(t, h.Host.NS, to, w4, w6); v4.IsValid() || v6.IsValid() {
			t.Errorf("%s: home reached the internet host as %v / %v (%v)", what, v4, v6, err)
		}
	}
	if r, err := h.Host.NS.Ping(t.Context(), to.Addr, 2); err == nil {
		t.Errorf("%s: the internet host answered a ping:\n%s", what, r.Output)
	}
	n, err := count.Packets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%s: %d packets from home's own public addresses reached the internet host", what, n)
	}
}

// TestExitNode: a home node whose user chose the office's exit node browses
// through it, IPv4 and IPv6: the internet host sees the office's public
// addresses. Before the administrator approves the exit node, and after it
// dies, the traffic is blocked and the internet host sees no packet from
// home's own addresses; meanwhile home keeps its direct path and its
// coordinator (the underlay stays outside the tunnel). `meshnode set`
// switches between direct and the exit node at run time.
func TestExitNode(t *testing.T) {
	e := newEnv(t)
	office := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, IPv6: true})
	home := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, IPv6: true})
	internet := e.site(t, netlab.SiteConfig{Kind: netlab.Public, IPv6: true})
	server := internet.Hosts[0]
	var ws []*netlab.Witness
	for _, a := range []netip.Addr{server.Addr, server.Addr6} {
		w, err := server.NS.Witness(netip.AddrPortFrom(a, witnessPort))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	w4, w6 := ws[0], ws[1]
	homeHost, gwHost := home.Hosts[0], office.Hosts[0]
	count, err := server.NS.CountFrom(t.Context(), home.Router.WAN(), homeHost.Addr6)
	if err != nil {
		t.Fatal(err)
	}

	gw := e.nodeWith(t, gwHost, "office-gw", "--advertise-exit-node")
	h := e.nodeWith(t, homeHost, "home", "--exit-node", "office-gw")
	mustDirect(t, h, gw)
	waitStatus(t, h, "the exit node is not approved yet", func(st netlab.Status) error {
		if x := st.ExitNode; x == nil || x.Reachable || x.State != localapi.ExitNotApproved {
			return fmt.Errorf("exit node %+v", st.ExitNode)
		}
		return nil
	})
	noLeak(t, "chosen, not approved", h, server, w4, w6, count)

	if _, err := e.coord.Routes(t.Context(), "approve", "office-gw", "exit"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, "through the exit node", homeHost.NS, server, w4, w6, office.Router.WAN(), gwHost.Addr6)
	if n, err := count.Packets(t.Context()); err != nil || n != 0 {
		t.Errorf("%d packets (%v) from home's own addresses reached the internet host while it used the exit node", n, err)
	}
	st := mustStatus(t, h)
	if x := st.ExitNode; x == nil || !x.Reachable || !st.Coordinator.Connected {
		t.Errorf("home's status: exit node %+v, coordinator connected %v", x, st.Coordinator.Connected)
	}
	if p, _ := st.Peer("office-gw"); p.Path != netlab.PathDirect || !p.ExitNodeOption {
		t.Errorf("home's path to office-gw %q (exit node option %v), want direct", p.Path, p.ExitNodeOption)
	}

	if _, err := h.Set(t.Context(), "--exit-node", ""); err != nil {
		t.Fatal(err)
	}
	waitExit(t, "direct again", homeHost.NS, server, w4, w6, home.Router.WAN(), homeHost.Addr6)
	if _, err := h.Set(t.Context(), "--exit-node", "office-gw"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, "through the exit node again", homeHost.NS, server, w4, w6, office.Router.WAN(), gwHost.Addr6)

	// The exit node dies: traffic is blocked, never sent directly.
	if count, err = server.NS.CountFrom(t.Context(), home.Router.WAN(), homeHost.Addr6); err != nil {
		t.Fatal(err)
	}
	if err := gw.Proc().Kill(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h, "the exit node is unreachable", func(st netlab.Status) error {
		if x := st.ExitNode; x == nil || x.Reachable || !st.Coordinator.Connected {
			return fmt.Errorf("exit node %+v, coordinator connected %v", st.ExitNode, st.Coordinator.Connected)
		}
		return nil
	})
	noLeak(t, "the exit node died", h, server, w4, w6, count)
	if got := osRoutes(t, e, homeHost.NS); !strings.Contains(got, "default dev mesh0") {
		t.Errorf("home's default routes through the tunnel are gone while its exit node is down:\n%s", got)
	}
	if err := h.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rules(t, e, homeHost.NS) + osRoutes(t, e, homeHost.NS); got != "" {
		t.Errorf("home left rules or routes after down:\n%s", got)
	}
	waitExit(t, "after down, direct", homeHost.NS, server, w4, w6, home.Router.WAN(), homeHost.Addr6)
}

// TestSubnetRouteCoveringOwnLAN: the office advertises 10.0.0.0/8, which
// covers the home LAN as well as its own. Home reaches the office LAN
// through the router, while its own LAN stays direct: a home LAN host sees
// the home node's own LAN address, not the office router's.
func TestSubnetRouteCoveringOwnLAN(t *testing.T) {
	e := newEnv(t)
	office := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 2})
	home := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 2})
	wide := netip.MustParsePrefix("10.0.0.0/8")
	gw := e.nodeWith(t, office.Hosts[0], "office-gw", "--advertise-routes", wide.String())
	h := e.node(t, home.Hosts[0], "home")
	mustDirect(t, h, gw)
	if _, err := e.coord.Routes(t.Context(), "approve", "office-gw", wide.String()); err != nil {
		t.Fatal(err)
	}
	waitReach(t, h.Host.NS, office.Hosts[1].Addr, true)

	neighbour := home.Hosts[1]
	w, err := neighbour.NS.Witness(netip.AddrPortFrom(neighbour.Addr, witnessPort))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := h.Host.NS.Connect(t.Context(), netip.AddrPortFrom(neighbour.Addr, witnessPort), probeTimeout); err != nil {
		t.Fatalf("home's own LAN, under a route to the office: %v", err)
	}
	if seen, err := w.SeenAfter(0, probeTimeout); seen != h.Host.Addr {
		t.Errorf("the home LAN host saw %v (%v), want the home node's own LAN address %v: the route took the LAN's traffic", seen, err, h.Host.Addr)
	}
	if got := osRoutes(t, e, h.Host.NS); !strings.Contains(got, "throw "+home.Router.LANPrefix().String()) {
		t.Errorf("home's table does not keep its LAN local:\n%s", got)
	}
	st := mustStatus(t, h)
	if !slices.Contains(st.Routes.Via, localapi.PeerRoute{Prefix: wide, Peer: "office-gw", State: localapi.RouteRouted}) {
		t.Errorf("home's status shows routes %+v", st.Routes.Via)
	}
}

// TestSubnetRouterFailover: two office routers serve the LAN; peers use
// the one approved first, and when it dies they move to the other within
// seconds; the LAN host answers throughout, but for the gap.
func TestSubnetRouterFailover(t *testing.T) {
	e := newEnv(t)
	office := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 3})
	home := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	lan := office.Router.LANPrefix()
	lanHost := office.Hosts[2]
	gw1 := e.startNode(t, office.Hosts[0], netlab.NodeConfig{Name: "gw1", Token: e.token, Args: []string{"--advertise-routes", lan.String()}}, true)
	gw2 := e.startNode(t, office.Hosts[1], netlab.NodeConfig{Name: "gw2", Token: e.token, ListenPort: netlab.DefaultNodePort + 1, Args: []string{"--advertise-routes", lan.String()}}, true)
	h := e.node(t, home.Hosts[0], "home")
	mustDirect(t, h, gw1)
	mustDirect(t, h, gw2)
	for _, gw := range []string{"gw1", "gw2"} {
		if _, err := e.coord.Routes(t.Context(), "approve", gw, lan.String()); err != nil {
			t.Fatal(err)
		}
	}
	w, err := lanHost.NS.Witness(netip.AddrPortFrom(lanHost.Addr, witnessPort))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	via := func(want netip.Addr) time.Duration {
		t.Helper()
		start := time.Now()
		err := netlab.Poll(t.Context(), routeTimeout, netlab.PollInterval, func(ctx context.Context) error {
			before := len(w.Seen())
			if err := h.Host.NS.Connect(ctx, netip.AddrPortFrom(lanHost.Addr, witnessPort), probeTimeout); err != nil {
				return err
			}
			if seen, err := w.SeenAfter(before, probeTimeout); err != nil || seen != want {
				return fmt.Errorf("the LAN host saw %v (%v), want %v", seen, err, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("home reaching the LAN through %v: %v", want, err)
		}
		return time.Since(start)
	}
	via(office.Hosts[0].Addr)
	if err := gw1.Proc().Kill(); err != nil {
		t.Fatal(err)
	}
	took := via(office.Hosts[1].Addr)
	t.Logf("home reaches the office LAN through gw2 %.1f s after gw1 died", took.Seconds())
	waitStatus(t, gw2, "gw2 is primary", func(st netlab.Status) error {
		if !slices.Equal(st.Routes.Primary, []netip.Prefix{lan}) {
			return fmt.Errorf("primary for %v", st.Routes.Primary)
		}
		return nil
	})
}
