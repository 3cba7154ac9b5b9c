package node_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/localapi"
)

// answerAt serves TCP on addr (an address behind n): each connection gets
// n's name, so a client sees which router carried it.
func answerAt(t *testing.T, n *meshlab.Node, addr netip.AddrPort) {
	t.Helper()
	ln, err := n.Net.ListenTCPAddrPort(addr)
	if err != nil {
		t.Fatalf("listen on %v behind %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, n.Name)
			c.Close()
		}
	}()
}

// whoAnswers dials addr from n over the overlay and returns the name of
// the node that answered.
func whoAnswers(n *meshlab.Node, addr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := n.Net.DialContextTCPAddrPort(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// waitAnswer polls until addr answers from n with want, or ("") until it
// answers no more.
func waitAnswer(t *testing.T, n *meshlab.Node, addr netip.AddrPort, want string) {
	t.Helper()
	what := fmt.Sprintf("%s reaches %v through %q", n.Name, addr, want)
	wait.ForNil(t, pathDeadline, what, func() error {
		got, err := whoAnswers(n, addr)
		switch {
		case want == "" && err != nil:
			return nil
		case err != nil:
			return err
		case got != want:
			return fmt.Errorf("answered by %q", got)
		}
		return nil
	})
}

// The office LAN behind two routers: nothing is routed before approval;
// then the LAN host answers through the router approved first, through the
// other when that one goes offline, and through none once the route is
// rejected. A peer's map, WireGuard's allowed IPs and status agree.
func TestSubnetRoutesFailover(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	lanHost := netip.MustParseAddr("192.168.10.5")
	lan := netip.MustParsePrefix("192.168.10.0/24")
	svc := netip.AddrPortFrom(lanHost, 80)
	router := meshlab.NodeOptions{AdvertiseRoutes: []string{lan.String()}, Behind: []netip.Addr{lanHost}}
	r1 := m.AddNode("r1", m.NAT(homeNAT("office1")).NewHost("r1", netip.MustParseAddr("10.0.1.2")), router)
	r2 := m.AddNode("r2", m.NAT(homeNAT("office2")).NewHost("r2", netip.MustParseAddr("10.0.2.2")), router)
	home := m.AddNode("home", m.NAT(homeNAT("home")).NewHost("home", netip.MustParseAddr("192.168.1.10")), meshlab.NodeOptions{})
	answerAt(t, r1, svc)
	answerAt(t, r2, svc)

	wait.For(t, pathDeadline, "both routers advertise the LAN", func() bool {
		list, _ := m.Coord.Routes(context.Background())
		return len(list) == 2
	})
	waitDirect(t, home, r1)
	if got, err := whoAnswers(home, svc); err == nil {
		t.Fatalf("the LAN answered (through %s) before any route was approved", got)
	}

	for _, r := range []string{"r1", "r2"} {
		if _, err := m.Coord.ApproveRoutes(context.Background(), r, []netip.Prefix{lan}); err != nil {
			t.Fatal(err)
		}
	}
	waitAnswer(t, home, svc, "r1")
	st := home.Engine.Status()
	if !slices.Contains(st.Routes.Via, localapi.PeerRoute{Prefix: lan, Peer: "r1", State: localapi.RouteRouted}) {
		t.Errorf("home's status shows routes %+v, want %v via r1", st.Routes.Via, lan)
	}
	if st := r1.Engine.Status(); !slices.Equal(st.Routes.Serving, []netip.Prefix{lan}) || !slices.Equal(st.Routes.Primary, []netip.Prefix{lan}) {
		t.Errorf("r1's status: serving %v, primary %v; want both %v", st.Routes.Serving, st.Routes.Primary, lan)
	}
	routeReach(t, home, "r1", lan)

	if err := r1.Stop(); err != nil {
		t.Fatal(err)
	}
	took := wait.For(t, pathDeadline, "home fails over to r2", func() bool {
		got, err := whoAnswers(home, svc)
		return err == nil && got == "r2"
	})
	t.Logf("failover to r2 %v after r1 stopped", took)

	for _, r := range []string{"r2", "r1"} {
		if _, err := m.Coord.RejectRoutes(context.Background(), r, []netip.Prefix{lan}); err != nil {
			t.Fatal(err)
		}
	}
	waitAnswer(t, home, svc, "")
	if st := home.Engine.Status(); len(st.Routes.Via) != 0 {
		t.Errorf("home still shows routes after the rejection: %+v", st.Routes.Via)
	}
}

// routeReach checks that n's status marks the route it sends through peer
// denied exactly while its access policy lets it reach only the peer, not
// the LAN behind it; it leaves n with no policy.
func routeReach(t *testing.T, n *meshlab.Node, peer string, lan netip.Prefix) {
	t.Helper()
	own := n.Engine.Status().Self.Addresses
	var src []netip.Prefix
	for _, a := range own {
		src = append(src, netip.PrefixFrom(a, a.BitLen()))
	}
	peerAddrs := func() []netip.Prefix {
		for _, p := range n.Engine.Status().Peers {
			if p.Name == peer {
				var out []netip.Prefix
				for _, a := range p.Addresses {
					out = append(out, netip.PrefixFrom(a, a.BitLen()))
				}
				return out
			}
		}
		t.Fatalf("%s has no peer %s", n.Name, peer)
		return nil
	}()
	for i, c := range []struct {
		dst    []netip.Prefix
		denied []netip.Prefix
	}{
		{peerAddrs, []netip.Prefix{lan}},
		{[]netip.Prefix{netip.PrefixFrom(lan.Addr().Next(), 32)}, nil}, // one host of the LAN is enough
	} {
		f := &wire.Filter{Version: uint64(100 + i), Rules: []wire.FilterRule{{Rule: "r", Src: src, Dst: c.dst, Proto: wire.ProtoTCP, Ports: []wire.PortRange{{First: 80, Last: 80}}}}}
		push(t, f, n)
		for _, p := range n.Engine.Status().Peers {
			if p.Name == peer && !slices.Equal(p.RoutesDenied, c.denied) {
				t.Errorf("rule to %v: %s's status of %s: routes %v, denied %v; want denied %v", c.dst, n.Name, peer, p.Routes, p.RoutesDenied, c.denied)
			}
		}
	}
	push(t, &wire.Filter{Version: 200, AllowAll: true}, n)
}

// An exit node carries a peer's internet traffic only once its user
// chooses it, and only while it is approved; the choice is checked.
func TestExitNodeChosenAtRunTime(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	web := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), 80)
	gw := m.AddNode("gw", m.NAT(homeNAT("office")).NewHost("gw", netip.MustParseAddr("10.0.1.2")),
		meshlab.NodeOptions{AdvertiseExitNode: true, Behind: []netip.Addr{web.Addr()}})
	laptop := m.AddNode("laptop", m.NAT(homeNAT("hotel")).NewHost("laptop", netip.MustParseAddr("192.168.1.10")), meshlab.NodeOptions{})
	answerAt(t, gw, web)
	waitDirect(t, laptop, gw)

	name := "gw"
	if _, err := laptop.Engine.SetPrefs(localapi.PrefsRequest{ExitNode: &name}); err == nil {
		t.Fatal("an exit node whose routes nobody approved was accepted")
	}
	if _, err := m.Coord.ApproveRoutes(context.Background(), "gw", []netip.Prefix{wire.ExitRouteV4, wire.ExitRouteV6}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, pathDeadline, "laptop sees gw as an exit node", func() bool {
		_, err := laptop.Engine.SetPrefs(localapi.PrefsRequest{ExitNode: &name})
		return err == nil
	})
	waitAnswer(t, laptop, web, "gw")
	if x := laptop.Engine.Status().ExitNode; x == nil || !x.Reachable || x.State != localapi.ExitReachable {
		t.Errorf("status shows the exit node as %+v, want reachable", x)
	}

	none := ""
	if _, err := laptop.Engine.SetPrefs(localapi.PrefsRequest{ExitNode: &none}); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, laptop, web, "")
	if x := laptop.Engine.Status().ExitNode; x != nil {
		t.Errorf("status shows exit node %+v after clearing it", x)
	}

	// Chosen again, then its routes rejected: it stays chosen, traffic is
	// blocked, and status says why.
	if _, err := laptop.Engine.SetPrefs(localapi.PrefsRequest{ExitNode: &name}); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, laptop, web, "gw")
	if _, err := m.Coord.RejectRoutes(context.Background(), "gw", []netip.Prefix{wire.ExitRouteV4, wire.ExitRouteV6}); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, laptop, web, "")
	wait.For(t, pathDeadline, "status says the exit node is not approved", func() bool {
		x := laptop.Engine.Status().ExitNode
		return x != nil && !x.Reachable && x.State == localapi.ExitNotApproved
	})
}
