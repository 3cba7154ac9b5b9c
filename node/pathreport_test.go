package node_test

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/metricvalue"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// Nodes report their paths to the coordinator over their stream, and its
// metrics count the pairs: a direct pair as direct, a pair that a network
// blocking UDP keeps on the relay as relayed. Each node's own metrics show
// the same path, and the traffic per peer.
func TestPathReportsReachTheCoordinator(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		blocked bool
		coord   func(m *meshlab.Mesh) bool
		// node is what a's own metrics show: its peers by path, and
		// falls back to the TCP relay.
		path      wire.PathKind
		fallbacks bool
	}{
		{"direct", false, func(m *meshlab.Mesh) bool {
			return pairs(m, wire.PathDirectUDP) == 1 && relayedPairs(m) == 0
		}, wire.PathDirectUDP, false},
		{"udp blocked", true, func(m *meshlab.Mesh) bool {
			return pairs(m, wire.PathDirectUDP) == 0 && relayedPairs(m) == 1
		}, wire.PathRelayedTCP, true},
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
			wait.For(t, pathDeadline, "the pair in the coordinator's path summary", func() bool { return tc.coord(m) })
			if got := m.Metric("meshnode_coordinator_path_reporting_nodes", "", ""); got != 2 {
				t.Errorf("path_reporting_nodes = %v, want 2", got)
			}

			reg := prometheus.NewRegistry()
			reg.MustRegister(a.Engine.Metrics())
			metric := func(name, label, value string) float64 {
				t.Helper()
				v, err := metricvalue.Of(reg, name, label, value)
				if err != nil {
					t.Fatalf("gather a's metrics: %v", err)
				}
				return v
			}
			if got := metric("meshnode_node_peers", "path", tc.path.String()); got != 1 {
				t.Errorf("a's peers on %s = %v, want 1", tc.path, got)
			}
			// a's one peer is b.
			for _, name := range []string{"peer_bytes_total", "peer_packets_total"} {
				for _, dir := range []string{"rx", "tx"} {
					if got := metric("meshnode_node_"+name, "direction", dir); got <= 0 {
						t.Errorf("a's %s{peer=b,direction=%s} = %v after a transfer, want more than 0", name, dir, got)
					}
				}
			}
			if got := metric("meshnode_node_peer_handshake_age_seconds", "peer", "b"); got <= 0 {
				t.Errorf("a's handshake age with b = %v, want more than 0", got)
			}
			if got := metric("meshnode_node_relay_fallbacks_total", "kind", "tcp_relay"); (got > 0) != tc.fallbacks {
				t.Errorf("a's TCP relay fallbacks = %v, want some: %v", got, tc.fallbacks)
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

// A node with metrics_listen serves its metrics there over HTTP.
func TestNodeServesMetrics(t *testing.T) {
	t.Parallel()
	// A free loopback port: the node must be given a port (0 is refused).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m := meshlab.New(t, meshlab.Options{})
	m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{MetricsListen: addr})
	resp, err := http.Get("http://" + addr + wire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `meshnode_node_peers{path="direct_udp"} 0`) {
		t.Fatalf("GET %s: %d, %v\n%s", wire.PathMetrics, resp.StatusCode, err, body)
	}
}
