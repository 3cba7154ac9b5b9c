package path

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
)

// asked is how many times n asked its socket to resend a handshake to peer.
func (f *fabric) asked(n, peer *node) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(f.resends[n.addr]), func(k crypto.PublicKey) bool { return k != peer.key }))
}

// A handshake that found no path is sent again the moment one may be up:
// the peer comes online (the relay carries it), the relay binds, a direct
// path answers, or the peer shows it is up with any discovery packet.
func TestHandshakeResentWhenAPathMayBeUp(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b"})
	if n := f.asked(a, b); n != 0 {
		t.Fatalf("asked %d times for an offline peer", n)
	}

	steps := []struct {
		what string
		do   func()
	}{
		{"the peer comes online", func() { introduce(a, b, b.addr) }},
		{"the relay binds", func() { f.relay(a, b) }},
		{"a discovery packet from the peer", func() { introduce(b, a, a.addr) }},
	}
	for _, s := range steps {
		before := f.asked(a, b)
		s.do()
		wait.For(t, 10*time.Second, s.what+" asks for the handshake", func() bool { return f.asked(a, b) > before })
	}
	waitPath(t, a, b, b.addr)
}

// A ready that found no relay (the node's first round starts before its
// relay is bound) goes the moment the relay binds, not a punch interval
// later: the peer holds its pings, and its handshake, until it hears it.
func TestReadyGoesWhenTheRelayBinds(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	// One punch tick in one long round: only the relay's binding can send
	// the ready again.
	tm.PunchInterval, tm.PunchDuration, tm.MaxRound = time.Hour, time.Hour, time.Hour
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", tm)
	b := f.addTimed(t, "198.18.2.1:41820", tm)
	f.relay(b)
	// b knows a (so it takes a's relayed messages) but doesn't punch it.
	b.m.UpsertPeer(PeerInfo{Key: a.key, Name: "a"})
	introduce(a, b, b.addr)
	wait.For(t, 10*time.Second, "a's first round primed b's mapping", func() bool { return a.m.Stats.PrimesSent.Load() > 0 })
	if n := b.m.Stats.ReadyReceived.Load(); n != 0 {
		t.Fatalf("b heard %d readies before a had a relay", n)
	}
	f.relay(a)
	wait.For(t, 10*time.Second, "b hears a's ready", func() bool { return b.m.Stats.ReadyReceived.Load() > 0 })
}

// A ping from a peer that has no direct path yet is answered with a ping at
// once, not at the next punch tick: its pong confirms the path.
func TestPingFromAPeerWithNoPathIsPingedBack(t *testing.T) {
	t.Parallel()
	_, a, b := holdingPair(t)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
}

// holdingPair is a, which knows b's mapping and punches it once, at the
// start of one long round, holding its pings there (no relay carries
// readies here), and b, which doesn't punch a: only what a hears from b
// can make a ping b.
func holdingPair(t *testing.T) (f *fabric, a, b *node) {
	t.Helper()
	slow := fastTiming()
	slow.PunchInterval, slow.PunchDuration, slow.MaxRound, slow.HoldTimeout = time.Hour, time.Hour, time.Hour, time.Hour
	f = newFabric()
	a = f.addTimed(t, "198.18.1.1:41820", slow)
	b = f.add(t, "198.18.2.1:41820")
	introduce(a, b, b.addr)
	wait.For(t, 10*time.Second, "a's first round primed b's mapping", func() bool { return a.m.Stats.PrimesSent.Load() > 0 })
	return f, a, b
}

// A WireGuard packet from a peer's candidate, where no pong confirmed the
// peer yet, makes the node ping that candidate at once: the peer's NAT has
// sent from there (a restarted node's peers keep sending while it holds
// its pings). A source that is no candidate makes it send nothing.
func TestStrayFromACandidateIsPinged(t *testing.T) {
	t.Parallel()
	f, a, b := holdingPair(t)
	b.m.UpsertPeer(PeerInfo{Key: a.key, Name: "a"}) // b answers a's pings
	stranger := netip.MustParseAddrPort("198.18.9.9:41820")
	var strangerPkts atomic.Int64
	f.mu.Lock()
	f.tap = func(_ []byte, _, to netip.AddrPort) {
		if to == stranger {
			strangerPkts.Add(1)
		}
	}
	f.mu.Unlock()
	a.m.Stray(stranger)
	a.m.Stray(b.addr)
	waitPath(t, a, b, b.addr)
	if n := strangerPkts.Load(); n != 0 {
		t.Errorf("a sent %d packets to a source that is no candidate", n)
	}
}

// When a node's relay binds, a relayed peer with no direct path hears
// from it through the relay at once: the peer's handshake, held until
// this node was reachable, goes now. Behind a network that blocks UDP no
// ready is ever due, so nothing else would reach the peer before
// WireGuard's 5 s retry.
func TestRelayedPeerHearsWhenTheRelayBinds(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	introduce(a, b)
	introduce(b, a)
	f.relay(b)
	before := f.asked(b, a)
	f.relay(a)
	wait.For(t, 10*time.Second, "b hears from a through the relay and sends its handshake", func() bool { return f.asked(b, a) > before })
}
