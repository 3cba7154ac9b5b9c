package node_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
)

// relayNodeMesh is a mesh with a relay node on a public address and two
// nodes behind random-port symmetric NATs, which can only be relayed; it
// returns the relay node's relay address too.
func relayNodeMesh(t *testing.T) (m *meshlab.Mesh, relay, a, b *meshlab.Node, relayAddr string) {
	m = meshlab.New(t, meshlab.Options{})
	relayHost := m.Lab.NewHost("office-server", netip.MustParseAddr("198.18.5.5"))
	relay = m.AddNode("office-server", relayHost, meshlab.NodeOptions{Relay: true})
	ha, hb := natlab.Symmetric(), natlab.Symmetric()
	ha.Name, hb.Name = "carrier-a", "carrier-b"
	a = m.AddNode("a", m.NAT(ha).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	b = m.AddNode("b", m.NAT(hb).NewHost("b", netip.MustParseAddr("10.2.0.2")), meshlab.NodeOptions{})
	return m, relay, a, b, netip.AddrPortFrom(relayHost.IPs()[0], meshlab.RelayPort).String()
}

// relayedVia waits until a and b reach each other through the relay at
// via, both ways.
func relayedVia(t *testing.T, a, b *meshlab.Node, via string) {
	t.Helper()
	wait.For(t, pathDeadline, a.Name+" and "+b.Name+" relayed through "+via, func() bool {
		pa, pb := a.PathTo(b), b.PathTo(a)
		return pa.Path == path.PathRelay && pa.Via == via && pb.Path == path.PathRelay && pb.Via == via
	})
}

// serves reports whether n's own status shows it serving as a relay at
// addr ("" for none) with the relay tag accordingly.
func serves(n *meshlab.Node, addr string) bool {
	self := n.Engine.Status().Self
	return self.Relay == addr && slices.Contains(self.Tags, coordinator.RelayTag) == (addr != "")
}

// The administrator's relay tag takes effect on a running mesh: untagged,
// a relay node stops serving and its relayed pairs move to the
// coordinator's relay, with traffic flowing; tagged again, they come back.
// The relay node learns its own record from the coordinator at once, not
// at its next welcome.
func TestRelayTagAppliesToARunningRelayNode(t *testing.T) {
	t.Parallel()
	m, r, a, b, relayNode := relayNodeMesh(t)
	coordRelay := meshlab.CoordRelay.String()

	relayedVia(t, a, b, relayNode)
	wait.For(t, pathDeadline, "the relay node's status shows it serving", func() bool { return serves(r, relayNode) })
	transfer(t, a, b, 64<<10)

	steps := []struct {
		name        string
		add, remove []string
		via         string // where a and b are relayed after it
		serving     string // what the relay node's status shows
	}{
		{"untag", nil, []string{coordinator.RelayTag}, coordRelay, ""},
		{"tag again", []string{coordinator.RelayTag}, nil, relayNode, relayNode},
	}
	for _, st := range steps {
		start := time.Now()
		if _, err := m.Coord.TagNode(context.Background(), r.Name, st.add, st.remove); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		wait.For(t, pathDeadline, st.name+": the relay node's own status", func() bool { return serves(r, st.serving) })
		own := time.Since(start)
		relayedVia(t, a, b, st.via)
		t.Logf("%s: the relay node's status changed after %v, a and b relayed through %s after %v", st.name, own.Round(time.Millisecond), st.via, time.Since(start).Round(time.Millisecond))
		transfer(t, a, b, 64<<10)
		transfer(t, b, a, 64<<10)
	}
}

// Under an access policy a relay node relays only between nodes that may
// see each other (node/relaynode.go): a pair a rule joins is still
// relayed through it, and carries traffic the policy allows.
func TestRelayNodeRelaysAPairThePolicyAllows(t *testing.T) {
	t.Parallel()
	m, r, a, b, relayNode := relayNodeMesh(t)
	if _, err := m.Coord.SetPolicy(context.Background(), "rules:\n  - {from: a, to: b}\n"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, pathDeadline, "a's policy in force", func() bool { return a.Engine.Status().Policy.Active })
	relayedVia(t, a, b, relayNode)
	transfer(t, a, b, 64<<10)
	// Carried by the relay node: had it dropped the pair's frames, both
	// ends would have reported it, the coordinator suspended it and the
	// transfer moved to the coordinator's relay.
	if pa := a.PathTo(b); pa.Path != path.PathRelay || pa.Via != relayNode || !serves(r, relayNode) {
		t.Errorf("after the transfer a's path to b is %s via %s, the relay node serving: %v; want the relay node carrying it", pa.Path, pa.Via, serves(r, relayNode))
	}
}
