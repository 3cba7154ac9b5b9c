package node_test

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// Nodes report their paths to the coordinator over their stream, and its
// metrics count the pairs: a direct pair as direct, a pair that a network
// blocking UDP keeps on the relay as relayed.
func TestPathReportsReachTheCoordinator(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		blocked bool
		want    func(m *meshlab.Mesh) bool
	}{
		{"direct", false, func(m *meshlab.Mesh) bool {
			return pairs(m, wire.PathDirectUDP) == 1 && relayedPairs(m) == 0
		}},
		{"udp blocked", true, func(m *meshlab.Mesh) bool {
			return pairs(m, wire.PathDirectUDP) == 0 && relayedPairs(m) == 1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := meshlab.New(t, meshlab.Options{})
			site := homeNAT("site")
			site.BlockUDP = tc.blocked
			a := m.AddNode("a", m.NAT(site).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
			b := m.AddNode("b", m.NAT(homeNAT("home")).NewHost("b", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
			// Traffic: a relayed pair is reported once it has talked.
			transfer(t, a, b, 64<<10)
			wait.For(t, pathDeadline, "the pair in the coordinator's path summary", func() bool { return tc.want(m) })
			if got := m.Metric("meshnode_coordinator_path_reporting_nodes", "", ""); got != 2 {
				t.Errorf("path_reporting_nodes = %v, want 2", got)
			}
		})
	}
}

func pairs(m *meshlab.Mesh, k wire.PathKind) float64 {
	return m.Metric("meshnode_coordinator_path_pairs", "path", k.String())
}

func relayedPairs(m *meshlab.Mesh) float64 {
	return pairs(m, wire.PathRelayedUDP) + pairs(m, wire.PathRelayedTCP)
}
