package path

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/bind"
)

// testRelay forwards relayed discovery between managers by key, or drops
// it all, and records what it was given.
type testRelay struct {
	addr netip.AddrPort
	drop atomic.Bool

	mu    sync.Mutex
	at    map[crypto.PublicKey]*Manager
	sends []send // in order
}

// send is one packet a node gave the relay.
type send struct{ from, to crypto.PublicKey }

func newTestRelay() *testRelay {
	return &testRelay{addr: netip.MustParseAddrPort("198.18.9.9:3479"), at: make(map[crypto.PublicKey]*Manager)}
}

// attach makes the relay n's relay, under check.
func (r *testRelay) attach(n *node) {
	r.mu.Lock()
	r.at[n.key] = n.m
	r.mu.Unlock()
	n.m.SetRelay(relayRoute{r, n.key})
	n.m.CheckRelay(r.addr)
}

func (r *testRelay) sent() []send {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]send(nil), r.sends...)
}

// relayRoute is a node's route through a testRelay.
type relayRoute struct {
	r    *testRelay
	from crypto.PublicKey
}

func (rr relayRoute) Send(bufs [][]byte, peer crypto.PublicKey) error {
	rr.r.mu.Lock()
	rr.r.sends = append(rr.r.sends, send{rr.from, peer})
	m := rr.r.at[peer]
	rr.r.mu.Unlock()
	if m == nil || rr.r.drop.Load() {
		return nil
	}
	for _, b := range bufs {
		m.HandleRelayedDisco(append([]byte{}, b...), rr.from)
	}
	return nil
}

func (rr relayRoute) Info() bind.RouteInfo {
	return bind.RouteInfo{Kind: bind.KindRelay, Addr: rr.r.addr, Via: rr.r.addr.String()}
}

func relayCheckTiming() Timing {
	tm := fastTiming()
	tm.RelayCheck = 20 * time.Millisecond
	tm.PingTimeout = 30 * time.Millisecond
	return tm
}

// relayedPair is two managers that know each other with no candidates:
// only the relay carries them.
func relayedPair(t *testing.T, r *testRelay) (a, b *node) {
	t.Helper()
	f := newFabric()
	a = f.addTimed(t, "198.18.1.1:41820", relayCheckTiming())
	b = f.addTimed(t, "198.18.2.1:41820", relayCheckTiming())
	introduce(a, b)
	introduce(b, a)
	r.attach(a)
	r.attach(b)
	return a, b
}

// nextRelayEvent returns a's next EventRelayUnanswered, skipping others.
func nextRelayEvent(t *testing.T, n *node, within time.Duration) (Event, bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-n.m.Events():
			if e.Kind == EventRelayUnanswered {
				return e, true
			}
		case <-deadline:
			return Event{}, false
		}
	}
}

// TestRelayCheck pings relayed peers through the relay under check: a
// relay that carries them gets pongs and no blame; one that drops them
// gets evidence naming the peer and the relay.
func TestRelayCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		drop bool
	}{
		{"a relay that carries the pair draws no evidence", false},
		{"a relay that drops the pair draws evidence naming the peer", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRelay()
			r.drop.Store(tt.drop)
			a, b := relayedPair(t, r)
			start := time.Now()
			if tt.drop {
				e, ok := nextRelayEvent(t, a, 10*time.Second)
				if !ok {
					t.Fatalf("no evidence after 10s; relay was given %d pings", len(r.sent()))
				}
				if e.Peer != b.key || e.Remote != r.addr || e.Since.Before(start) || e.Since.After(time.Now()) {
					t.Fatalf("evidence %+v, want peer %s through %v since the test began", e, b.key.Short(), r.addr)
				}
				return
			}
			// Pongs through the relay: more than a verdict's worth of
			// checks were answered.
			wait.For(t, 10*time.Second, "relayed check pongs", func() bool { return a.m.Stats.PongsReceived.Load() >= 4*3 })
			if e, ok := nextRelayEvent(t, a, 0); ok {
				t.Fatalf("evidence %+v against a relay that carries", e)
			}
		})
	}
}

// TestRelayCheckIsBounded: with many relayed peers, a check pings at most
// relayCheckPeers of them, and every peer's turn comes.
func TestRelayCheckIsBounded(t *testing.T) {
	t.Parallel()
	r := newTestRelay()
	r.drop.Store(true)
	f := newFabric()
	tm := relayCheckTiming()
	a := f.addTimed(t, "198.18.1.1:41820", tm)
	const peers = 10
	want := map[crypto.PublicKey]bool{}
	for range peers {
		k := newKey(t)
		want[k] = true
		a.m.UpsertPeer(PeerInfo{Key: k, Name: "relayed", Online: true})
	}
	start := time.Now()
	r.attach(a)
	turns := (peers + relayCheckPeers - 1) / relayCheckPeers
	wait.For(t, 10*time.Second, "checks through the relay", func() bool { return len(r.sent()) >= turns*relayCheckPeers })
	sent := r.sent()
	checks := int(time.Since(start)/tm.RelayCheck) + 1
	if len(sent) > checks*relayCheckPeers {
		t.Fatalf("%d pings through the relay in %d checks, want at most %d per check", len(sent), checks, relayCheckPeers)
	}
	for _, s := range sent[:turns*relayCheckPeers] {
		delete(want, s.to)
	}
	if len(want) != 0 {
		t.Fatalf("%d of %d peers not checked in the first %d checks", len(want), peers, turns)
	}
}

// A peer with a direct path is not checked through the relay, and a relay
// not under check (the coordinator's) is not pinged through at all.
func TestRelayCheckOnlyRelayedPeersUnderCheck(t *testing.T) {
	t.Parallel()
	r := newTestRelay()
	f := newFabric()
	a, b := f.pair(t, relayCheckTiming())
	r.attach(a)
	r.attach(b)
	relayed := newKey(t)
	a.m.UpsertPeer(PeerInfo{Key: relayed, Name: "relayed", Online: true})
	// c uses the relay without checking it; it has a relayed peer too.
	c := f.addTimed(t, "198.18.3.1:41820", relayCheckTiming())
	c.m.SetRelay(relayRoute{r, c.key})
	c.m.UpsertPeer(PeerInfo{Key: relayed, Name: "relayed", Online: true})

	checks := func() (n int) {
		for _, s := range r.sent() {
			if s.from == a.key && s.to == relayed {
				n++
			}
		}
		return n
	}
	wait.For(t, 10*time.Second, "a's checks of its relayed peer", func() bool { return checks() >= 6 })
	for _, s := range r.sent() {
		switch {
		case s.to == b.key:
			t.Fatalf("b, reached directly, was pinged through the relay")
		case s.from == c.key:
			t.Fatalf("c pinged %s through a relay it does not check", s.to.Short())
		}
	}
}
