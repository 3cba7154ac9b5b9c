package e2e

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// TestSameNAT: two nodes behind one router that doesn't hairpin reach each
// other over their LAN addresses, which they must offer as candidates.
func TestSameNAT(t *testing.T) {
	e := newEnv(t)
	s := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: 2})
	a := e.node(t, s.Hosts[0], "lan-a")
	b := e.node(t, s.Hosts[1], "lan-b")
	p := mustDirect(t, a, b)
	for _, c := range []struct {
		view netlab.PeerStatus
		peer *netlab.Node
	}{{p.A, b}, {p.B, a}} {
		want := netip.AddrPortFrom(c.peer.Host.Addr, netlab.DefaultNodePort).String()
		if c.view.Endpoint != want {
			t.Errorf("path to %s uses %q, want its LAN address %s (the router doesn't hairpin)", c.peer.Name, c.view.Endpoint, want)
		}
	}
	mustPing(t, a, b, 3)
}
