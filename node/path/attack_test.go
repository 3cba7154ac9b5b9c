package path

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// callMeMaybe seals a call-me-maybe from n to peer listing addrs.
func callMeMaybe(t *testing.T, n *node, peer *node, addrs []netip.AddrPort) []byte {
	t.Helper()
	pkt, err := n.m.seal(peer.key, wire.Disco{Type: wire.DiscoCallMeMaybe, Addr: addrs})
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// sentBy records the destinations of n's packets that keep accepts; the
// returned function lists them so far.
func sentBy(f *fabric, n *node, keep func(netip.AddrPort) bool) func() []netip.AddrPort {
	var mu sync.Mutex
	var to []netip.AddrPort
	f.mu.Lock()
	f.tap = func(_ []byte, from, dst netip.AddrPort) {
		if from == n.addr && keep(dst) {
			mu.Lock()
			to = append(to, dst)
			mu.Unlock()
		}
	}
	f.mu.Unlock()
	return func() []netip.AddrPort {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(to)
	}
}

// A member floods a peer with call-me-maybe messages, each listing as many
// (unanswering) ports of its own vouched address as the format allows
// (other addresses are never probed, see
// TestCallMeMaybeCannotAimAtThirdParties). The victim acts on at most
// one a CallMeMaybeGap, punches at most maxCandidates addresses, and sends
// no more than its per-peer punch budget: before these bounds, 200 such
// messages made a victim send ~150,000 pings.
func TestCallMeMaybeFloodIsBounded(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.PunchDuration = 300 * time.Millisecond
	tm.MaxRound = 600 * time.Millisecond
	f := newFabric()
	victim, attacker := f.pair(t, tm)

	sent := sentBy(f, victim, func(to netip.AddrPort) bool { return to != attacker.addr })

	const messages = 200
	sentBefore := victim.m.Stats.PingsSent.Load()
	start := time.Now()
	for i := range messages {
		var addrs []netip.AddrPort
		for j := range 32 {
			addrs = append(addrs, netip.AddrPortFrom(attacker.addr.Addr(), uint16(1000+32*i+j)))
		}
		victim.m.HandleDisco(callMeMaybe(t, attacker, victim, addrs), attacker.addr, 0)
	}
	// Let the rounds the flood started run out.
	idle := time.NewTimer(tm.MaxRound + 4*tm.Tick)
	<-idle.C
	elapsed := time.Since(start)
	pings := victim.m.Stats.PingsSent.Load() - sentBefore

	// Heartbeats to the attacker's real path, plus the punch budget.
	budget := uint64(float64(tm.PunchRate)*elapsed.Seconds()) + uint64(tm.PunchRate/4+1)
	heartbeats := uint64(elapsed/tm.ActiveHeartbeat) + 2
	if pings > budget+heartbeats {
		t.Errorf("victim sent %d pings in %v for %d call-me-maybe messages, over its budget of %d", pings, elapsed.Round(time.Millisecond), messages, budget+heartbeats)
	}
	if dropped := victim.m.Stats.CallMeMaybeDropped.Load(); dropped < messages-2 {
		t.Errorf("%d of %d call-me-maybe messages were ignored, want all but the first", dropped, messages)
	}
	targets := map[netip.AddrPort]bool{}
	for _, a := range sent() {
		targets[a] = true
	}
	if len(targets) > maxCandidates {
		t.Errorf("victim punched %d distinct addresses, want at most %d", len(targets), maxCandidates)
	}
	t.Logf("%d messages × 32 addresses: %d pings in %v to %d addresses", messages, pings, elapsed.Round(time.Millisecond), len(targets))
}

// A member's call-me-maybe naming third parties' addresses (a web server, a
// victim's home) makes its peer send them nothing: only addresses the
// coordinator vouched for the member are probed.
func TestCallMeMaybeCannotAimAtThirdParties(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	f := newFabric()
	victim, attacker := f.pair(t, tm)
	aimed := sentBy(f, victim, func(to netip.AddrPort) bool { return to.Addr() != attacker.addr.Addr() })
	third := []netip.AddrPort{
		netip.MustParseAddrPort("198.19.7.7:443"),
		netip.MustParseAddrPort("198.18.1.2:41820"), // beside the victim
		netip.MustParseAddrPort("[2001:2:0:9::1]:41820"),
	}
	pings := victim.m.Stats.PingsSent.Load()
	victim.m.HandleDisco(callMeMaybe(t, attacker, victim, third), attacker.addr, 0)
	// The round the message started runs out; heartbeats go on to the
	// attacker itself, and nothing anywhere else.
	wait.For(t, 10*time.Second, "the victim's round to end", func() bool {
		victim.m.mu.Lock()
		defer victim.m.mu.Unlock()
		return victim.m.Stats.PingsSent.Load() > pings && !victim.m.peers[attacker.key].punching(time.Now())
	})
	if got := aimed(); len(got) > 0 {
		t.Fatalf("the victim sent to third parties: %v", got)
	}
	if got := victim.m.Stats.Unvouched.Load(); got != uint64(len(third)) {
		t.Errorf("%d addresses counted unvouched, want %d", got, len(third))
	}
}

// A peer that keeps sending news (new candidates every poll) can't keep a
// punch round going past MaxRound: the round ends, and the next one starts
// afresh with its own bound.
func TestRoundCannotBeStretched(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.PunchDuration = 100 * time.Millisecond
	tm.MaxRound = 200 * time.Millisecond
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", tm)
	peer := newKey(t)
	var i byte
	round := func() (start, until time.Time) {
		i++
		a.m.UpsertPeer(PeerInfo{Key: peer, Name: "newsy", Online: true,
			Endpoints: []wire.Endpoint{{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 0, i}), 9), Kind: wire.EndpointSTUN}}})
		a.m.mu.Lock()
		defer a.m.mu.Unlock()
		p := a.m.peers[peer]
		return p.roundStart, p.punchUntil
	}
	first, _ := round()
	wait.For(t, 20*time.Second, "the first round to end despite news", func() bool {
		start, until := round()
		if until.After(start.Add(tm.MaxRound)) {
			t.Fatalf("round from %v stretched to %v, past MaxRound %v", start, until, tm.MaxRound)
		}
		return start != first
	})
}

// testScope permits everything but one forbidden prefix.
type testScope struct{ deny netip.Prefix }

func (s testScope) Permit(a netip.AddrPort, _ string) bool { return !s.deny.Contains(a.Addr()) }

// A peer's claimed candidates that are bogons (loopback, link-local,
// multicast, unspecified, port 0) or outside the node's scope are never
// probed, whether they come from the coordinator or a call-me-maybe.
func TestClaimedAddressesOutsideScopeAreNeverProbed(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	a.m.SetScope(testScope{deny: netip.MustParsePrefix("192.168.7.0/24")})
	probed := sentBy(f, a, func(netip.AddrPort) bool { return true })
	claims := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:41820"),
		netip.MustParseAddrPort("[::1]:41820"),
		netip.MustParseAddrPort("169.254.1.1:41820"),
		netip.MustParseAddrPort("[fe80::1]:41820"),
		netip.MustParseAddrPort("224.0.0.251:5353"),
		netip.MustParseAddrPort("[ff02::1]:41820"),
		netip.MustParseAddrPort("0.0.0.0:41820"),
		netip.MustParseAddrPort("198.18.9.9:0"),
		netip.MustParseAddrPort("192.168.7.20:22"), // the scope's forbidden LAN
	}
	var eps []wire.Endpoint
	for _, c := range claims {
		eps = append(eps, wire.Endpoint{Addr: c, Kind: wire.EndpointSTUN})
	}
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b", Online: true, Endpoints: append(eps, wire.Endpoint{Addr: b.addr, Kind: wire.EndpointSTUN})})
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	a.m.HandleDisco(callMeMaybe(t, b, a, claims), b.addr, 0)
	idle := time.NewTimer(10 * fastTiming().PunchInterval)
	<-idle.C
	for _, p := range probed() {
		for _, c := range claims {
			if p == c {
				t.Errorf("a probed %v, which b merely claimed", p)
			}
		}
	}
}

// A member forges the source address of its (validly sealed) pings to be
// another peer's address: the victim must keep attributing that address to
// the peer that confirmed it, so the peer's WireGuard packets are not
// handed to the forger's session. Addresses nobody confirms any more are
// forgotten.
func TestForgedSourceCannotStealAPeersAddress(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.Keepalive = 50 * time.Millisecond
	tm.ActiveHeartbeat = 50 * time.Millisecond
	tm.AddrTTL = 4 * tm.Keepalive
	// The silent peer punches the victim again once its path died, from
	// the address in question; a short round lets it fall silent sooner.
	tm.PunchDuration = time.Second
	f := newFabric()
	victim := f.addTimed(t, "198.18.1.1:41820", tm)
	peer := f.addTimed(t, "198.18.2.1:41820", tm)
	forger := f.addTimed(t, "198.18.3.1:41820", tm)
	for _, x := range []*node{peer, forger} {
		introduce(victim, x, x.addr)
		introduce(x, victim, victim.addr)
		waitPath(t, victim, x, x.addr)
	}
	for range 20 {
		var tx [wire.TxIDLen]byte
		tx[0] = byte(len(t.Name()))
		pkt, err := forger.m.seal(victim.key, wire.Disco{Type: wire.DiscoPing, TxID: tx})
		if err != nil {
			t.Fatal(err)
		}
		victim.m.HandleDisco(pkt, peer.addr, 0) // spoofed: the peer's address
	}
	if k, ok := victim.m.PeerAt(peer.addr); !ok || k != peer.key {
		t.Fatalf("after forged pings, %v is attributed to %v (ok %v), want the peer", peer.addr, k.Short(), ok)
	}
	// The peer goes away: its address is forgotten once no pong confirms it.
	f.mu.Lock()
	f.block[peer.addr] = true
	f.mu.Unlock()
	wait.For(t, 20*time.Second, "the silent peer's address forgotten", func() bool {
		_, ok := victim.m.PeerAt(peer.addr)
		return !ok
	})
}

// Strangers with keys of their own seal valid pings to a node: each is
// rejected as not a peer, and the node keeps no state for any of them.
func TestStrangersLeaveNoSealingState(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a, _ := f.pair(t, fastTiming())
	before := a.m.DiscoKeys()
	for i := range 100 {
		stranger := f.add(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}), 41820).String())
		pkt, err := stranger.m.seal(a.key, wire.Disco{Type: wire.DiscoPing})
		if err != nil {
			t.Fatal(err)
		}
		a.m.HandleDisco(pkt, stranger.addr, 0)
	}
	if got := a.m.DiscoKeys(); got != before {
		t.Errorf("a holds sealing state for %d keys after 100 strangers, want %d (its peers)", got, before)
	}
}

// A member floods a peer with ready messages over the relay, one every few
// milliseconds. Each may start a round (the peer holds its pings for our
// ready), but at most one a CallMeMaybeGap, and the rounds stay within the
// punch budget.
func TestReadyFloodIsBounded(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.PunchDuration, tm.MaxRound, tm.CallMeMaybeGap = 100*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	f := newFabric()
	victim, attacker := f.pair(t, tm)
	f.relay(victim, attacker)
	const messages = 200
	sentBefore := victim.m.Stats.PingsSent.Load()
	start := time.Now()
	pace := time.NewTicker(5 * time.Millisecond)
	defer pace.Stop()
	for range messages {
		<-pace.C
		// Each is sealed anew: the sealer's replay window drops a copy.
		pkt, err := attacker.m.seal(victim.key, wire.Disco{Type: wire.DiscoReady})
		if err != nil {
			t.Fatal(err)
		}
		victim.m.HandleRelayedDisco(pkt, attacker.key)
	}
	idle := time.NewTimer(tm.MaxRound + 4*tm.Tick)
	<-idle.C
	elapsed := time.Since(start)
	sent := victim.m.Stats.PingsSent.Load() - sentBefore
	// At most one round a gap, each at most MaxRound of punch intervals to
	// the one candidate, plus heartbeats.
	rounds := uint64(elapsed/tm.CallMeMaybeGap) + 2
	perRound := uint64(tm.MaxRound/tm.PunchInterval) + 1
	heartbeats := uint64(elapsed/tm.ActiveHeartbeat) + 2
	if sent > rounds*perRound+heartbeats {
		t.Errorf("victim sent %d pings in %v for %d readies, over %d rounds' worth (%d)", sent, elapsed.Round(time.Millisecond), messages, rounds, rounds*perRound+heartbeats)
	}
	if got := victim.m.Stats.ReadyReceived.Load(); got != messages {
		t.Errorf("victim took %d readies, want the %d sent", got, messages)
	}
	t.Logf("%d readies over %v: %d pings", messages, elapsed.Round(time.Millisecond), sent)
}
