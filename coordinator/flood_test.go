package coordinator_test

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// Stream limits as the coordinator applies them (stream.go); the tests
// derive their bounds from these and the time a flood took.
const (
	cueGap          = time.Second
	rendezvousRate  = 10
	rendezvousBurst = 100
	endpointRate    = 1
	endpointBurst   = 8
)

// received waits until the coordinator has read n messages of typ.
func received(t *testing.T, h *harness, typ string, n int) {
	t.Helper()
	eventually(t, func() bool {
		return h.metric("meshnode_coordinator_stream_messages_total", "type", typ) >= float64(n)
	}, "coordinator did not read %d %s messages", n, typ)
}

// A member floods rendezvous requests naming a victim: each would cue the
// victim to punch the attacker's candidates. The victim's stream survives,
// it gets at most one cue per cueGap from the attacker, and it keeps
// working with its other peers.
func TestRendezvousFloodLeavesVictimConnected(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "attacker", "victim", "friend")
	attacker, victim, friend := nodes[0], nodes[1], nodes[2]
	sa, sv, sf := attacker.connect(), victim.connect(), friend.connect()

	const flood = 5000
	vk := victim.key()
	start := time.Now()
	for range flood {
		if err := sa.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &vk}); err != nil {
			t.Fatalf("attacker's stream: %v", err)
		}
	}
	received(t, h, wire.MsgRendezvous, flood)
	flooded := time.Since(start)
	eventually(t, func() bool { return sv.punchesFrom(attacker.key()) >= 1 }, "victim got no cue at all")

	// The victim still works: a friend's change reaches it, and its own
	// rendezvous with the friend cues both at once.
	ep := announce(t, sf, 4001, "")
	handled(t, sv, friend, ep)
	fk := friend.key()
	if err := sv.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &fk}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return sv.punchesFrom(fk) == 1 && sf.punchesFrom(vk) == 1 }, "victim's own rendezvous not cued")
	if sv.closed() || sv.errorCode() != "" {
		t.Fatalf("victim's stream ended (%s) by another node's flood", sv.errorCode())
	}

	elapsed := time.Since(start)
	cues := sv.punchesFrom(attacker.key())
	bound := 1 + int(math.Ceil(elapsed.Seconds()/cueGap.Seconds()))
	overBudget := h.metric("meshnode_coordinator_stream_limited_total", "reason", "rendezvous_over_budget")
	t.Logf("%d requests in %v: victim got %d cues from the attacker (bound %d after %v); %v requests over budget, %v cues coalesced",
		flood, flooded.Round(time.Millisecond), cues, bound, elapsed.Round(time.Millisecond), overBudget,
		h.metric("meshnode_coordinator_stream_limited_total", "reason", "cue_coalesced"))
	if cues > bound {
		t.Fatalf("victim got %d cues from the attacker in %v, more than one per %v (%d)", cues, elapsed, cueGap, bound)
	}
	if passed := flood - int(overBudget); passed > rendezvousBurst+int(math.Ceil(flooded.Seconds()*rendezvousRate))+1 {
		t.Fatalf("%d of the attacker's %d requests passed its budget in %v", passed, flood, flooded)
	}
	if sa.closed() {
		t.Fatal("the attacker's stream was closed: excess is dropped, not fatal")
	}
}

// A cue asked for within the gap of the last one for the same pair is
// held until the gap ends, not lost: the peers still punch together.
func TestCueWithinGapIsHeldNotLost(t *testing.T) {
	t.Parallel()
	_, nodes := mesh(t, "a", "b")
	a, b := nodes[0], nodes[1]
	sa, sb := a.connect(), b.connect()
	bk := b.key()
	ask := func() {
		if err := sa.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &bk}); err != nil {
			t.Fatal(err)
		}
	}
	ask()
	eventually(t, func() bool { return sb.punchesFrom(a.key()) == 1 && sa.punchesFrom(bk) == 1 }, "first cue not sent to both")
	ask()
	eventually(t, func() bool { return sb.punchesFrom(a.key()) == 2 && sa.punchesFrom(bk) == 2 }, "second cue lost")
}

// A node takes a cue's candidates as the peer's whole list: a cue must
// never carry older ones than the map it has. Here cues are held (asked
// within the gap) while the peer's candidates keep changing.
func TestCuesCarryCurrentCandidates(t *testing.T) {
	t.Parallel()
	_, nodes := mesh(t, "a", "b")
	a, b := nodes[0], nodes[1]
	sa, sb := a.connect(), b.connect()
	bk := b.key()
	for i := range 6 {
		if err := sa.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &bk}); err != nil {
			t.Fatal(err)
		}
		ep := announce(t, sb, uint16(5000+i), "")
		handled(t, sa, b, ep)
	}
	eventually(t, func() bool {
		p, _ := sa.peer(bk)
		sa.mu.Lock()
		defer sa.mu.Unlock()
		n := len(sa.punches)
		return n >= 2 && slices.Equal(sa.punches[n-1].Endpoints, p.Endpoints)
	}, "the last cue does not carry b's current candidates")
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.staleCues > 0 {
		t.Fatalf("%d of %d cues carried older candidates than the map a had", sa.staleCues, len(sa.punches))
	}
}

// A node that reports new candidates and then asks for a rendezvous has
// its peer cued with the new candidates, as when reports were stored
// before the next message was read, whether the report is stored yet or
// still held by the budget.
func TestCueCarriesCandidatesReportedBefore(t *testing.T) {
	t.Parallel()
	// More rounds than the report budget's burst, so later reports wait;
	// each with another peer, so no cue waits for the pair's gap.
	const rounds = endpointBurst + 4
	names := []string{"b"}
	for i := range rounds {
		names = append(names, fmt.Sprintf("p%d", i))
	}
	_, nodes := mesh(t, names...)
	b := nodes[0]
	sb := b.connect()
	for i, p := range nodes[1:] {
		sp := p.connect()
		pk := p.key()
		port := uint16(6000 + i)
		ep := wire.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), port), Kind: wire.EndpointSTUN}
		if err := sb.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}}); err != nil {
			t.Fatal(err)
		}
		if err := sb.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &pk}); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() bool { return sp.punchesFrom(b.key()) == 1 }, "%s not cued", p.reg.Self.Name)
		sp.mu.Lock()
		got := withoutTCP(sp.punches[0].Endpoints)
		sp.mu.Unlock()
		if len(got) != 1 || got[0].Addr.Port() != port {
			t.Fatalf("round %d: the cue carries %v, not the candidates reported just before (port %d)", i, got, port)
		}
	}
}

// A victim that reads slowly (here: not at all, until the flood is over)
// is not cut off for traffic that others cause: a rendezvous flood naming
// it, and endpoint changes of a peer, wait for it one entry per peer.
func TestSlowVictimIsNotCutOff(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "attacker", "victim")
	attacker, victim := nodes[0], nodes[1]
	sv := victim.connectPaused()
	sa := attacker.connect()

	const flood = 3000
	vk := victim.key()
	start := time.Now()
	for i := range flood {
		m := wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &vk}
		if i%2 == 1 {
			m = wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{
				Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), uint16(10000+i)), Kind: wire.EndpointSTUN}}}
		}
		if err := sa.send(m); err != nil {
			t.Fatalf("attacker's stream: %v", err)
		}
	}
	received(t, h, wire.MsgRendezvous, flood/2)
	received(t, h, wire.MsgEndpoints, flood/2)
	sv.resume()
	last := uint16(10000 + flood - 1)
	eventually(t, func() bool {
		p, _ := sv.peer(attacker.key())
		got := withoutTCP(p.Endpoints)
		return len(got) == 1 && got[0].Addr.Port() == last
	}, "victim never caught up with the attacker's latest endpoints")
	elapsed := time.Since(start)
	if sv.closed() || sv.errorCode() != "" {
		t.Fatalf("slow victim's stream ended (%q)", sv.errorCode())
	}
	cues, deltas := sv.punchesFrom(attacker.key()), sv.deltasOf(attacker.key())
	t.Logf("after %v: the slow victim got %d cues and %d deltas for %d messages of the attacker", elapsed.Round(time.Millisecond), cues, deltas, flood)
	if bound := 1 + int(math.Ceil(elapsed.Seconds()/cueGap.Seconds())); cues > bound {
		t.Fatalf("victim got %d cues, more than one per %v (%d)", cues, cueGap, bound)
	}
}

// A member sends thousands of endpoint changes: each stored one costs a
// synced write and a push to every peer. The writes and pushes stay within
// the node's budget, the latest change is the one that sticks, and the
// sender's stream stays up.
func TestEndpointFloodIsBounded(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "flooder", "peer")
	flooder, peer := nodes[0], nodes[1]
	sp := peer.connect()
	sf := flooder.connect()
	pushesBefore := sp.deltasOf(flooder.key())

	const flood = 3000
	start := time.Now()
	for i := range flood {
		ep := wire.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), uint16(20000+i)), Kind: wire.EndpointSTUN}
		if err := sf.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}}); err != nil {
			t.Fatalf("flooder's stream: %v", err)
		}
	}
	received(t, h, wire.MsgEndpoints, flood)
	last := uint16(20000 + flood - 1)
	eventually(t, func() bool {
		p, _ := sp.peer(flooder.key())
		got := withoutTCP(p.Endpoints)
		return len(got) == 1 && got[0].Addr.Port() == last
	}, "the latest endpoints never reached the peer")
	elapsed := time.Since(start)

	writes := h.metric("meshnode_coordinator_endpoint_writes_total", "", "")
	pushes := sp.deltasOf(flooder.key()) - pushesBefore
	bound := endpointBurst + int(math.Ceil(elapsed.Seconds()*endpointRate)) + 1
	t.Logf("%d endpoint changes in %v: %v store writes, %d pushes to the peer (bound %d), %v coalesced",
		flood, elapsed.Round(time.Millisecond), writes, pushes, bound,
		h.metric("meshnode_coordinator_stream_limited_total", "reason", "endpoints_coalesced"))
	if int(writes) > bound {
		t.Fatalf("%v store writes for %d changes in %v; the budget allows %d", writes, flood, elapsed, bound)
	}
	if pushes > bound {
		t.Fatalf("%d pushes to the peer for %d changes in %v; the budget allows %d", pushes, flood, elapsed, bound)
	}
	if sf.closed() {
		t.Fatal("the flooder's stream was closed: excess is coalesced, not fatal")
	}
	stored, _ := h.srv.Nodes(t.Context())
	for _, n := range stored {
		if n.Name == "flooder" && (len(withoutTCP(n.Endpoints)) != 1 || withoutTCP(n.Endpoints)[0].Addr.Port() != last) {
			t.Fatalf("stored endpoints %v, want the latest (port %d)", n.Endpoints, last)
		}
	}
}

// A member reconnecting in a loop: every round used to store its presence
// twice (synced writes). Its peers still see each change, but the store
// is written at most once per 10 s for it.
func TestReconnectLoopIsBounded(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "flapper", "peer")
	flapper, peer := nodes[0], nodes[1]
	sp := peer.connect()
	const rounds = 30
	start := time.Now()
	for range rounds {
		flapper.connect().close()
	}
	delivered(t, "the last disconnect", func() bool { p, _ := sp.peer(flapper.key()); return !p.Online && !p.LastSeen.IsZero() })
	elapsed := time.Since(start)
	writes := h.metric("meshnode_coordinator_presence_writes_total", "", "")
	// The peer's own connection is one write; the flapper's first another.
	bound := 2 + int(math.Ceil(elapsed.Seconds()/10))
	t.Logf("%d reconnects in %v: %v presence writes (bound %d), %d deltas to the peer", rounds, elapsed.Round(time.Millisecond), writes, bound, sp.deltasOf(flapper.key()))
	if int(writes) > bound {
		t.Fatalf("%v presence writes for %d reconnects in %v, more than one per 10 s (%d)", writes, rounds, elapsed, bound)
	}
	if sp.closed() {
		t.Fatal("the peer's stream was closed")
	}
}
