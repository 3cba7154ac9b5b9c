package coordinator_test

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

// pathMesh is a coordinator with three connected nodes.
type pathMesh struct {
	h          *harness
	a, b, c    *node
	sa, sb, sc *stream
}

func newPathMesh(t *testing.T) *pathMesh {
	t.Helper()
	m := &pathMesh{h: start(t, testConfig(t))}
	tok := m.h.token(coordinator.TokenOptions{Reusable: true})
	m.a, m.b, m.c = newNode(t, m.h).join(tok, "alice"), newNode(t, m.h).join(tok, "bob"), newNode(t, m.h).join(tok, "carol")
	m.sa, m.sb, m.sc = m.a.connect(), m.b.connect(), m.c.connect()
	return m
}

func (m *pathMesh) report(t *testing.T, s *stream, entries ...wire.PathEntry) {
	t.Helper()
	if err := s.send(wire.StreamMsg{Type: wire.MsgPaths, Paths: wire.AppendPathReport(nil, entries)}); err != nil {
		t.Fatal(err)
	}
}

func (m *pathMesh) pairs(kind wire.PathKind) float64 {
	return m.h.metric("meshnode_coordinator_path_pairs", "path", kind.String())
}

func (m *pathMesh) verdicts(v string) float64 {
	return m.h.metric("meshnode_coordinator_path_reports_total", "verdict", v)
}

func direct(n *node) wire.PathEntry {
	return wire.PathEntry{Peer: n.key(), Kind: wire.PathDirectUDP, RTT: 3 * time.Millisecond}
}

// A node's path report shows in the coordinator's summary, each pair once:
// by the newer of its two ends' reports. A node's report goes with its
// stream.
func TestPathReportUpdatesSummary(t *testing.T) {
	t.Parallel()
	m := newPathMesh(t)
	m.report(t, m.sa, direct(m.b),
		wire.PathEntry{Peer: m.c.key(), Kind: wire.PathRelayedUDP, Via: wire.ViaCoordinator, Why: wire.WhyHardNATs})
	eventually(t, func() bool {
		return m.pairs(wire.PathDirectUDP) == 1 && m.pairs(wire.PathRelayedUDP) == 1 &&
			m.h.metric("meshnode_coordinator_relayed_pairs", "reason", "hard_nats") == 1
	}, "alice's report in the summary")
	if got := m.h.metric("meshnode_coordinator_path_reporting_nodes", "", ""); got != 1 {
		t.Errorf("path_reporting_nodes = %v, want 1", got)
	}

	// bob's newer word on the alice-bob pair wins; the pair counts once.
	m.report(t, m.sb, wire.PathEntry{Peer: m.a.key(), Kind: wire.PathRelayedTCP, Via: wire.ViaCoordinator, Why: wire.WhyUDPBlocked})
	eventually(t, func() bool {
		return m.pairs(wire.PathDirectUDP) == 0 && m.pairs(wire.PathRelayedTCP) == 1 && m.pairs(wire.PathRelayedUDP) == 1
	}, "bob's newer report wins for the pair")

	// bob goes: only alice's report is left, and her view of the pair.
	m.sb.close()
	eventually(t, func() bool {
		return m.h.metric("meshnode_coordinator_path_reporting_nodes", "", "") == 1 &&
			m.pairs(wire.PathDirectUDP) == 1 && m.pairs(wire.PathRelayedTCP) == 0
	}, "bob's report forgotten with his stream")
	if got := m.verdicts("accepted"); got != 2 {
		t.Errorf("accepted reports = %v, want 2", got)
	}
}

// A report is hostile input: entries naming nodes that are not the
// reporter's peers are dropped, reports over the budget are dropped, and
// a malformed one closes the stream as a bad request.
func TestPathReportsAreBounded(t *testing.T) {
	t.Parallel()
	m := newPathMesh(t)
	stranger := newNode(t, m.h) // never registered
	self := wire.PathEntry{Peer: m.a.key(), Kind: wire.PathDirectUDP}
	m.report(t, m.sa, direct(stranger), direct(m.b), self)
	eventually(t, func() bool { return m.verdicts("partial") == 1 }, "report naming a stranger and itself weighed")
	if got := m.pairs(wire.PathDirectUDP); got != 1 {
		t.Fatalf("direct pairs = %v after a report naming a stranger, itself and bob; want 1 (bob)", got)
	}

	for range 3 * wire.PathReportBurst {
		m.report(t, m.sc, direct(m.b))
	}
	eventually(t, func() bool {
		return m.verdicts("accepted")+m.verdicts("over_budget") == 3*wire.PathReportBurst
	}, "every report weighed")
	if got := m.verdicts("over_budget"); got < wire.PathReportBurst {
		t.Fatalf("%v of %d reports dropped over budget, want at least %d", got, 3*wire.PathReportBurst, wire.PathReportBurst)
	}

	for _, tc := range []struct {
		name string
		msg  wire.StreamMsg
	}{
		{"a partial entry", wire.StreamMsg{Type: wire.MsgPaths, Paths: make([]byte, wire.PathEntryLen-1)}},
		{"through a relay node without relay_key", wire.StreamMsg{Type: wire.MsgPaths, Paths: wire.AppendPathReport(nil, []wire.PathEntry{
			{Peer: m.a.key(), Kind: wire.PathRelayedUDP, Via: wire.ViaRelayNode},
		})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.b.connect()
			if err := s.send(tc.msg); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return s.errorCode() == wire.ErrCodeBadRequest && s.closed() }, "the stream closed as a bad request")
		})
	}
	if got := m.verdicts("invalid"); got != 2 {
		t.Errorf("invalid reports = %v, want 2", got)
	}
}
