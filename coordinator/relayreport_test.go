package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// relayMesh is a coordinator with a designated relay node that announces
// its relay, and three plain nodes; every stream sees the relay offered.
type relayMesh struct {
	h              *harness
	gw, a, b, c    *node
	sg, sa, sb, sc *stream
	addr           string
}

func newRelayMesh(t *testing.T, tune ...func(*coordinator.Server)) *relayMesh {
	t.Helper()
	m := &relayMesh{h: start(t, testConfig(t), tune...), addr: "198.18.0.77:3479"}
	plain := m.h.token(coordinator.TokenOptions{Reusable: true})
	m.gw = newNode(t, m.h).join(m.h.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "gateway")
	m.a, m.b, m.c = newNode(t, m.h).join(plain, "alice"), newNode(t, m.h).join(plain, "bob"), newNode(t, m.h).join(plain, "carol")
	m.sg, m.sa, m.sb, m.sc = m.gw.connect(), m.a.connect(), m.b.connect(), m.c.connect()
	ep := announce(t, m.sg, 2001, m.addr)
	for _, s := range m.plain() {
		if p := handled(t, s, m.gw, ep); p.Relay != m.addr {
			t.Fatalf("relay offered as %q, want %s", p.Relay, m.addr)
		}
	}
	return m
}

func (m *relayMesh) plain() []*stream { return []*stream{m.sa, m.sb, m.sc} }

// report sends a relay report about the gateway from s, naming peer.
func (m *relayMesh) report(t *testing.T, s *stream, peer *node) {
	t.Helper()
	k := m.gw.key()
	msg := wire.StreamMsg{Type: wire.MsgRelayReport, RelayKey: &k}
	if peer != nil {
		pk := peer.key()
		msg.Peer = &pk
	}
	if err := s.send(msg); err != nil {
		t.Fatal(err)
	}
}

func (m *relayMesh) verdicts(v string) float64 {
	return m.h.metric("meshnode_coordinator_relay_reports_total", "verdict", v)
}

// suspended reports whether every plain node sees the gateway withdrawn
// as suspended, and the gateway sees itself so.
func (m *relayMesh) suspended() bool {
	for _, s := range m.plain() {
		if p, _ := s.peer(m.gw.key()); p.Relay != "" || p.RelaySuspendedUntil.IsZero() {
			return false
		}
	}
	return !m.sg.me().RelaySuspendedUntil.IsZero()
}

// offered reports whether every plain node is offered the gateway's relay
// again, and the gateway sees itself unsuspended.
func (m *relayMesh) offered() bool {
	for _, s := range m.plain() {
		if p, _ := s.peer(m.gw.key()); p.Relay != m.addr || !p.RelaySuspendedUntil.IsZero() {
			return false
		}
	}
	return m.sg.me().RelaySuspendedUntil.IsZero()
}

// A relay node reported as not carrying is suspended for every node at
// once: on a reporter's own echoes at once, on a peer's evidence only when
// both ends report each other. Suspended, it is withdrawn from every peer
// map, told so itself and listed as such; the suspension ends on its own,
// and a relay reported again is suspended for twice as long.
func TestReportedRelayIsSuspended(t *testing.T) {
	t.Parallel()
	const base = time.Second
	m := newRelayMesh(t, coordinator.ShortRelaySuspensions(base))

	// alice's relayed pings to bob went unanswered: bob may just be dead.
	m.report(t, m.sa, m.b)
	eventually(t, func() bool { return m.verdicts("unconfirmed") == 1 }, "alice's report weighed")
	if !m.offered() {
		t.Fatal("the relay was withdrawn on one end's word")
	}
	// bob says the same of alice: both alive, neither heard through it.
	m.report(t, m.sb, m.a)
	eventually(t, m.suspended, "relay suspended for every node and itself")
	if got := m.h.metric("meshnode_coordinator_relays_suspended", "", ""); got != 1 {
		t.Errorf("relays_suspended = %v, want 1", got)
	}
	list, err := m.h.srv.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if n.Name == "gateway" && (n.Relay != "" || n.RelaySuspendedUntil.IsZero()) {
			t.Errorf("nodes list shows the gateway as %+v, want its relay suspended", n)
		}
	}
	// Reports while suspended change nothing.
	m.report(t, m.sc, nil)
	eventually(t, func() bool { return m.verdicts("stale") == 1 }, "carol's report weighed")

	// The suspension ends: offered again, everywhere.
	eventually(t, m.offered, "relay offered again after its suspension")
	if got := m.h.metric("meshnode_coordinator_relays_suspended", "", ""); got != 0 {
		t.Errorf("relays_suspended = %v after the suspension, want 0", got)
	}
	// carol's echoes don't come back: suspended at once, for twice as long.
	before := time.Now()
	m.report(t, m.sc, nil)
	eventually(t, m.suspended, "relay suspended again")
	p, _ := m.sa.peer(m.gw.key())
	if d := p.RelaySuspendedUntil.Sub(before); d < 2*base {
		t.Fatalf("second suspension ends %v after the report, want at least %v", d, 2*base)
	}
	if m.verdicts("suspended") != 2 {
		t.Fatalf("suspended verdicts = %v, want 2", m.verdicts("suspended"))
	}
}

// What a node's reports can cost is bounded: a report naming a key that is
// no peer is ignored, reports beyond the budget are dropped, and one that
// names no relay ends the stream as a bad request.
func TestRelayReportsAreBounded(t *testing.T) {
	t.Parallel()
	m := newRelayMesh(t)
	stranger := newNode(t, m.h) // never registered
	m.report(t, m.sa, stranger)
	eventually(t, func() bool { return m.verdicts("invalid") == 1 }, "report naming a stranger weighed")

	for range 3 * wire.RelayReportBurst {
		m.report(t, m.sb, m.c)
	}
	eventually(t, func() bool {
		return m.verdicts("unconfirmed")+m.verdicts("over_budget") == 3*wire.RelayReportBurst
	}, "every report weighed")
	if got := m.verdicts("over_budget"); got < wire.RelayReportBurst {
		t.Fatalf("%v of %d reports dropped over budget, want at least %d", got, 3*wire.RelayReportBurst, wire.RelayReportBurst)
	}
	if !m.offered() {
		t.Fatal("relay withdrawn on one node's reports about one peer")
	}

	var none *crypto.PublicKey
	if err := m.sc.send(wire.StreamMsg{Type: wire.MsgRelayReport, RelayKey: none}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return m.sc.errorCode() == wire.ErrCodeBadRequest }, "a report without relay_key refused")
}
