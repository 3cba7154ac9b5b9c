package path

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// orderTiming holds pings for the peer's ready longer than the tests wait,
// so only a ready (or the peer's ping) can release them.
func orderTiming() Timing {
	t := fastTiming()
	t.HoldTimeout = time.Hour
	t.ReadyInterval = 50 * time.Millisecond
	return t
}

// No full-TTL packet goes to a peer's public mapping before the peer said
// it primed its NAT (its ready) or pinged us: the packet that could arrive
// early at a router that tracks it is never sent. Both still go direct.
func TestOrderedPunch(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", orderTiming())
	b := f.addTimed(t, "198.18.2.1:41820", orderTiming())
	f.relay(a, b)
	var early atomic.Int32
	f.mu.Lock()
	f.tap = func(_ []byte, from, to netip.AddrPort) {
		for _, x := range []struct {
			n    *node
			peer netip.AddrPort
		}{{a, b.addr}, {b, a.addr}} {
			s := &x.n.m.Stats
			if from == x.n.addr && to == x.peer && s.ReadyReceived.Load()+s.PingsReceived.Load() == 0 {
				early.Add(1)
			}
		}
	}
	f.mu.Unlock()
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	waitPath(t, b, a, a.addr)
	if n := early.Load(); n != 0 {
		t.Errorf("%d full-TTL packets left for a peer's mapping before its ready", n)
	}
	f.mu.Lock()
	primes := f.primes
	f.mu.Unlock()
	if primes == 0 || a.m.Stats.ReadySent.Load()+b.m.Stats.ReadySent.Load() == 0 {
		t.Errorf("%d primes and %d+%d readies sent; want the punch primed and announced", primes, a.m.Stats.ReadySent.Load(), b.m.Stats.ReadySent.Load())
	}
}

// A round that knows none of the peer's public mappings primes nothing, so
// it claims no ready; its LAN candidates are pinged at once. Once the
// peer's STUN mapping arrives, the round primes it and says so.
func TestReadyOnlyAfterPriming(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", orderTiming())
	b := f.addTimed(t, "198.18.2.1:41820", orderTiming())
	f.relay(a, b)
	lan := netip.MustParseAddrPort("10.2.0.2:41820")
	introduce(b, a) // b knows a as a peer, none of its addresses
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b", Online: true, Endpoints: []wire.Endpoint{{Addr: lan, Kind: wire.EndpointLAN}}})
	wait.For(t, 10*time.Second, "a pings b's LAN address", func() bool { return a.m.Stats.PingsSent.Load() >= 3 })
	if n := a.m.Stats.ReadySent.Load(); n != 0 {
		t.Fatalf("a sent %d readies before it knew a public mapping of b's to prime", n)
	}
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b", Online: true, Endpoints: []wire.Endpoint{
		{Addr: lan, Kind: wire.EndpointLAN},
		{Addr: b.addr, Kind: wire.EndpointSTUN},
	}})
	wait.For(t, 10*time.Second, "a primes b's mapping and tells b", func() bool {
		return a.m.Stats.PrimesSent.Load() > 0 && b.m.Stats.ReadyReceived.Load() > 0
	})
}

// A prime that can't be sent (the socket refuses the TTL) takes back the
// ready that follows it: the peer's pings must not come before our NAT is
// open. Once primes go out, the ready does too.
func TestNoReadyAfterAFailedPrime(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", orderTiming())
	b := f.addTimed(t, "198.18.2.1:41820", orderTiming())
	f.relay(a, b)
	f.mu.Lock()
	f.noTTL[a.addr] = true
	f.mu.Unlock()
	introduce(b, a) // b knows a as a peer, none of its addresses
	introduce(a, b, b.addr)
	wait.For(t, 10*time.Second, "a tries to prime b's mapping", func() bool { return a.m.Stats.PrimesSent.Load() >= 3 })
	if n := b.m.Stats.ReadyReceived.Load(); n != 0 {
		t.Fatalf("b got %d readies from a, whose primes all failed", n)
	}
	f.mu.Lock()
	f.noTTL[a.addr] = false
	f.mu.Unlock()
	wait.For(t, 10*time.Second, "a's ready once its primes go out", func() bool { return b.m.Stats.ReadyReceived.Load() > 0 })
}

// orderedFails reads a peer's count of failed ordered rounds.
func orderedFails(n *node, peer crypto.PublicKey) int {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	if p, ok := n.m.peers[peer]; ok {
		return p.orderedFails
	}
	return 0
}

// An ordered round that fails (both sides ready, nothing got through: an
// early packet holds a router's port) is followed by a quiet period: no
// packet to the peer, not even for new candidates, until it has passed;
// then a retry punches through.
func TestQuietAfterOrderedRoundFails(t *testing.T) {
	t.Parallel()
	tm := orderTiming()
	tm.PunchDuration, tm.MaxRound, tm.RetryMin = 200*time.Millisecond, 400*time.Millisecond, 20*time.Millisecond
	tm.QuietPeriod = 2 * time.Second
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", tm)
	b := f.addTimed(t, "198.18.2.1:41820", tm)
	f.relay(a, b)
	f.mu.Lock()
	f.block[a.addr], f.block[b.addr] = true, true
	f.mu.Unlock()
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	wait.For(t, 10*time.Second, "an ordered round to fail on both sides", func() bool {
		return orderedFails(a, b.key) > 0 && orderedFails(b, a.key) > 0
	})
	failed := time.Now()
	sent := a.m.Stats.PingsSent.Load()
	// New candidates would start a round at once; in the quiet period they
	// must not.
	introduce(a, b, b.addr, netip.MustParseAddrPort("198.18.2.1:41821"))
	f.mu.Lock()
	f.block[a.addr], f.block[b.addr] = false, false
	f.mu.Unlock()
	// The assertion is about silence over a span, so a timer is the point.
	half := time.NewTimer(tm.QuietPeriod / 2)
	<-half.C
	if n := a.m.Stats.PingsSent.Load() - sent; n != 0 && time.Since(failed) < tm.QuietPeriod {
		t.Fatalf("a sent %d pings to b in its quiet period", n)
	}
	waitPath(t, a, b, b.addr)
	if d := time.Since(failed); d < tm.QuietPeriod/2 {
		t.Errorf("direct again %v after the failed round, inside the quiet period %v", d, tm.QuietPeriod)
	}
}
