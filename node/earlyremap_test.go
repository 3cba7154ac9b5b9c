package node_test

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
)

// Two homes behind routers that remap when punched early go direct on the
// ports their STUN mappings show: each primed its router before the
// other's first packet reached it, so neither router kept a packet of the
// other's nor moved a flow. (The routers do keep the answers of each
// node's NAT filtering test, from the coordinator's other address.) (Unordered, the emulated routers keep the first pings and
// the pair stays on the relay.)
func TestEarlyRemapNATsGoDirect(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	var nats [2]*natlab.NAT
	var nodes [2]*meshlab.Node
	for i, name := range []string{"home", "office"} {
		cfg := earlyRemapNAT()
		cfg.Name = name
		nats[i] = m.NAT(cfg)
		nodes[i] = m.AddNode(name+"-pc", nats[i].NewHost(name+"-pc"), meshlab.NodeOptions{})
	}
	a, b := nodes[0], nodes[1]
	t.Logf("direct after %v", waitDirect(t, a, b))
	for _, c := range []struct {
		from, to *meshlab.Node
		nat      *natlab.NAT
	}{{a, b, nats[1]}, {b, a, nats[0]}} {
		want := netip.AddrPortFrom(c.nat.PublicIP(), 41820)
		if got := c.from.PathTo(c.to).Endpoint; got != want {
			t.Errorf("%s reaches %s at %v, want its mapping %v", c.from.Name, c.to.Name, got, want)
		}
	}
	for i, n := range nats {
		other := nats[1-i].PublicIP()
		if kept, s := n.TrackedFrom(other), n.Stats(); s.Remapped != 0 || kept != 0 {
			t.Errorf("%s kept %d early packets from %v and moved %d flows", n.Name(), kept, other, s.Remapped)
		}
	}
	transfer(t, a, b, 256<<10)
}
