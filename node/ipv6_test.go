package node_test

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/node/path"
)

// TestIPv6OnlyNodes: two IPv6-only hosts go direct over IPv6 (their global
// addresses reach each other as first-class candidates, vouched for by
// their signed STUN over IPv6), and an IPv6-only host reaches an
// IPv4-only one behind a symmetric NAT through the coordinator's relay,
// which each binds in its own family.
func TestIPv6OnlyNodes(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	addrA, addrB := netip.MustParseAddr("2001:2:0:1::2"), netip.MustParseAddr("2001:2:0:2::2")
	a := m.AddNode("v6-a", m.Lab.NewHost("v6-a", addrA), meshlab.NodeOptions{})
	b := m.AddNode("v6-b", m.Lab.NewHost("v6-b", addrB), meshlab.NodeOptions{})
	carrier := natlab.Symmetric()
	carrier.Name = "carrier"
	c := m.AddNode("v4", m.NAT(carrier).NewHost("v4", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})

	t.Logf("IPv6 pair direct after %v", waitDirect(t, a, b))
	want := netip.AddrPortFrom(addrB, config.DefaultListenPort)
	if ep := a.PathTo(b).Endpoint; ep != want {
		t.Errorf("v6-a reaches v6-b at %v, want its global address %v", ep, want)
	}
	transfer(t, a, b, 256<<10)

	t.Logf("IPv6-only and IPv4-only on the relay after %v", waitPath(t, a, c, path.PathRelay))
	transfer(t, a, c, 256<<10)
	transfer(t, c, a, 64<<10)
}
