package node_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
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

// A node restarted while its coordinator runs on (an upgrade, a reboot)
// resumes from the map it cached: the file names the version it holds,
// and the coordinator sends only what changed since, here a peer renamed
// while the node was down.
func TestRestartResumesFromCachedMap(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	a := m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	b := m.AddNode("b", m.NAT(homeNAT("office")).NewHost("b", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{})
	m.AddNode("c", m.NAT(homeNAT("cafe")).NewHost("c", netip.MustParseAddr("10.9.0.2")), meshlab.NodeOptions{})
	wait.For(t, pathDeadline, "b sees a and c online", func() bool { return slices.Equal(peerNames(b), []string{"a", "c"}) })

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	var cached struct {
		Map struct {
			Held  wire.MapVersion `json:"held"`
			Peers []wire.Node     `json:"peers"`
		} `json:"map"`
	}
	raw, err := os.ReadFile(filepath.Join(b.StateDir(), "peermap.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cached); err != nil || cached.Map.Held.Epoch == 0 || len(cached.Map.Peers) != 2 {
		t.Fatalf("b's cached map holds version %+v and %d peers (%v), want a version and a and c", cached.Map.Held, len(cached.Map.Peers), err)
	}
	if _, err := m.Coord.RenameNode(context.Background(), "c", "cafe"); err != nil {
		t.Fatal(err)
	}
	full := m.Metric("meshnode_coordinator_welcomes_total", "map", "full")
	resumed := m.Metric("meshnode_coordinator_welcomes_total", "map", "resumed")

	b = m.Restart(b)
	wait.For(t, pathDeadline, "b sees a and c under its new name", func() bool {
		return slices.Equal(peerNames(b), []string{"a", "cafe"})
	})
	if got := m.Metric("meshnode_coordinator_welcomes_total", "map", "resumed") - resumed; got != 1 {
		t.Errorf("%v welcomes resumed a map after b's restart; want 1, b's", got)
	}
	if got := m.Metric("meshnode_coordinator_welcomes_total", "map", "full") - full; got != 0 {
		t.Errorf("%v full maps after b's restart; want none", got)
	}
	waitDirect(t, a, b)
}
