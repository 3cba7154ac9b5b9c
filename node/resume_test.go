package node_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
)

// peerNames is n's peers, online ones only, by name.
func peerNames(n *meshlab.Node) []string {
	var out []string
	for _, p := range n.Engine.Status().Peers {
		if p.Online {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// When the nodes' streams drop and come back to the same coordinator,
// each says which map it holds and gets only what it missed meanwhile (a
// rename it never heard of, its delta lost with the connection); the
// renamed node, whose own record changed, gets the full map.
func TestReconnectResumesMap(t *testing.T) {
	m := meshlab.New(t, meshlab.Options{})
	a := m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	b := m.AddNode("b", m.NAT(homeNAT("office")).NewHost("b", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{})
	c := m.AddNode("c", m.NAT(homeNAT("cafe")).NewHost("c", netip.MustParseAddr("10.9.0.2")), meshlab.NodeOptions{})
	wait.For(t, pathDeadline, "a sees b and c online", func() bool { return slices.Equal(peerNames(a), []string{"b", "c"}) })
	wait.For(t, pathDeadline, "b and c see their peers online", func() bool {
		return len(peerNames(b)) == 2 && len(peerNames(c)) == 2
	})
	full := m.Metric("meshnode_coordinator_welcomes_total", "map", "full")

	m.CoordLink.Freeze()
	if _, err := m.Coord.RenameNode(context.Background(), "c", "cafe"); err != nil {
		t.Fatal(err)
	}
	m.CoordLink.Cut()
	m.CoordLink.Thaw()

	wait.For(t, pathDeadline, "a and b see c under its new name", func() bool {
		return slices.Equal(peerNames(a), []string{"b", "cafe"}) && slices.Equal(peerNames(b), []string{"a", "cafe"})
	})
	wait.For(t, pathDeadline, "c sees a and b", func() bool { return slices.Equal(peerNames(c), []string{"a", "b"}) })
	if got := m.Metric("meshnode_coordinator_welcomes_total", "map", "resumed"); got != 2 {
		t.Errorf("%v welcomes resumed a map; want 2, a's and b's", got)
	}
	if got := m.Metric("meshnode_coordinator_welcomes_total", "map", "full") - full; got != 1 {
		t.Errorf("%v full maps after the cut; want 1, c's", got)
	}
}
