package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// ipv6DirectDeadline is the goal for dual-stack sites: a family that can
// go direct at once should (issue 17: it took 19 s; a cone pair takes
// 0.3 s), whatever the IPv4 NATs are.
const ipv6DirectDeadline = 5 * time.Second

// ipv6Pairs is how many fresh pairs TestIPv6GoesDirectPastSymmetricNATs
// measures, for a figure rather than one sample.
const ipv6Pairs = 3

// TestIPv6GoesDirectPastSymmetricNATs: two homes whose IPv4 NATs are both
// symmetric (no direct IPv4 path can exist) but which have global IPv6
// behind stateful firewalls go direct over IPv6 within
// ipv6DirectDeadline of the second node's start.
func TestIPv6GoesDirectPastSymmetricNATs(t *testing.T) {
	e := newEnv(t)
	for i := range ipv6Pairs {
		sa := e.site(t, netlab.SiteConfig{Kind: netlab.Symmetric, IPv6: true})
		sb := e.site(t, netlab.SiteConfig{Kind: netlab.Symmetric, IPv6: true})
		a := e.node(t, sa.Hosts[0], fmt.Sprintf("dual%da", i))
		start := time.Now()
		b := e.node(t, sb.Hosts[0], fmt.Sprintf("dual%db", i))
		p, err := waitPath(t.Context(), a, b, ipv6DirectDeadline, netlab.PathDirect)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("pair %d: not direct %v after the second node started: %v", i, ipv6DirectDeadline, err)
		}
		for _, side := range []struct {
			view netlab.PeerStatus
			peer *netlab.Node
		}{{p.A, b}, {p.B, a}} {
			ep, err := netip.ParseAddrPort(side.view.Endpoint)
			if err != nil || ep.Addr() != side.peer.Host.Addr6 {
				t.Errorf("pair %d: path to %s at %q, want its global IPv6 address %v", i, side.peer.Name, side.view.Endpoint, side.peer.Host.Addr6)
			}
		}
		t.Logf("pair %d: direct over IPv6 %.2f s after the second node started (%s via %s, %s via %s)", i, took.Seconds(), a.Name, p.A.Endpoint, b.Name, p.B.Endpoint)
		mustPing(t, a, b, 3)
		if i == 0 {
			ipv6Transfer(t, a, b)
		}
	}
}

// ipv6Transfer carries a TCP transfer over the overlay from a to b, whose
// path is IPv6: WireGuard's own packets to an IPv6 peer, after IPv4 STUN
// from the same socket.
func ipv6Transfer(t *testing.T, a, b *netlab.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	res, err := netlab.Transfer{From: a.Host.NS, To: b.Host.NS, Addr: mustStatus(t, b).Me().V4(), Size: matrixTransfer, StallTimeout: stallTimeout}.Run(ctx)
	if err != nil {
		t.Fatalf("TCP %s→%s over IPv6: %v (%d bytes)", a.Name, b.Name, err, res.Bytes)
	}
	t.Logf("TCP %s→%s over IPv6: %d bytes at %.0f Mbit/s", a.Name, b.Name, res.Bytes, res.Rate()*8/1e6)
}

// TestIPv6OnlySiteJoins: a site without any IPv4 joins the mesh with a
// token for the coordinator's IPv6 address; it goes direct over IPv6 to a
// dual-stack site and reaches an IPv4-only site through the coordinator's
// relay, bound over IPv6 on its side and IPv4 on the other.
func TestIPv6OnlySiteJoins(t *testing.T) {
	e := newEnv(t)
	s6 := e.site(t, netlab.SiteConfig{Kind: netlab.IPv6Only})
	sDual := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, IPv6: true})
	s4 := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	tok6, err := e.coord.TokenAt(t.Context(), e.coord.URL6())
	if err != nil {
		t.Fatal(err)
	}
	v6 := e.nodeWithToken(t, s6.Hosts[0], "v6only", tok6)
	dual := e.node(t, sDual.Hosts[0], "dual")
	v4 := e.node(t, s4.Hosts[0], "v4only")

	p := mustDirect(t, v6, dual)
	if ep, err := netip.ParseAddrPort(p.A.Endpoint); err != nil || ep.Addr() != dual.Host.Addr6 {
		t.Errorf("v6only reaches dual at %q, want its global IPv6 address %v", p.A.Endpoint, dual.Host.Addr6)
	}
	mustPing(t, v6, dual, 3)

	r, err := waitPath(t.Context(), v6, v4, pathTimeout, netlab.PathRelay)
	if err != nil {
		t.Fatalf("relay between the IPv6-only and the IPv4-only site: %v", err)
	}
	relay6 := netip.AddrPortFrom(netlab.CoordinatorAddr6(), netlab.STUNPort).String()
	relay4, _ := netlab.CoordinatorAddrs()
	t.Logf("v6only via %s, v4only via %s", r.A.Endpoint, r.B.Endpoint)
	if r.A.Endpoint != relay6 || r.B.Endpoint != netip.AddrPortFrom(relay4, netlab.STUNPort).String() {
		t.Errorf("relayed via %q and %q, want the coordinator's relay at %s (IPv6 side) and %v:%d (IPv4 side)", r.A.Endpoint, r.B.Endpoint, relay6, relay4, netlab.STUNPort)
	}
	mustPing(t, v6, v4, 3)
	mustPing(t, v4, v6, 3)
}
