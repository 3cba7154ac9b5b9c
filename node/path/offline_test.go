package path

import (
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

// doubts drains n's pending events and counts EventCoordinatorDoubted,
// checking each names from. The fabric delivers synchronously, so what a
// call posted is queued when it returns.
func doubts(t *testing.T, n, from *node) int {
	t.Helper()
	count := 0
	for {
		select {
		case e := <-n.m.Events():
			if e.Kind != EventCoordinatorDoubted {
				continue
			}
			if e.Peer != from.key {
				t.Errorf("doubt names %v, want %v", e.Peer, from.key)
			}
			count++
		default:
			return count
		}
	}
}

// A peer the coordinator shows offline while its direct path is up hears
// so from this node; the peer then asks for one check of its stream, and
// however many more notices come within wire.StreamCheckGap (a flood from
// a hostile peer, here), no other. A notice through the relay, and a peer
// gone offline with no direct path, ask for and send nothing.
func TestOfflineNotice(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a, b := f.pair(t, fastTiming())
	f.relay(a, b)
	doubts(t, b, a)

	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b", Online: false, Endpoints: []wire.Endpoint{{Addr: b.addr, Kind: wire.EndpointSTUN}}})
	if n := a.m.Stats.OfflineSent.Load(); n != 1 {
		t.Fatalf("a sent %d offline notices for b's going offline, want 1", n)
	}
	if n := doubts(t, b, a); n != 1 {
		t.Fatalf("b asked for %d checks after a's notice, want 1", n)
	}

	const flood = 100
	for range flood {
		pkt, err := a.m.seal(b.key, wire.Disco{Type: wire.DiscoOffline})
		if err != nil {
			t.Fatal(err)
		}
		b.m.HandleDisco(pkt, a.addr, 0)
	}
	if n := doubts(t, b, a); n != 0 {
		t.Errorf("b asked for %d more checks for %d notices within the gap, want 0", n, flood)
	}
	if n := b.m.Stats.OfflineReceived.Load(); n != flood+1 {
		t.Errorf("b counted %d notices, want %d", n, flood+1)
	}

	pkt, err := a.m.seal(b.key, wire.Disco{Type: wire.DiscoOffline})
	if err != nil {
		t.Fatal(err)
	}
	b.m.HandleRelayedDisco(pkt, a.key)
	if n := b.m.Stats.OfflineReceived.Load(); n != flood+1 {
		t.Errorf("a notice through the relay was taken (%d counted)", n)
	}

	c := f.add(t, "198.18.3.1:41820")
	introduce(a, c)
	a.m.UpsertPeer(PeerInfo{Key: c.key, Name: "c", Online: false})
	if n := a.m.Stats.OfflineSent.Load(); n != 1 {
		t.Errorf("a sent a notice to c, which it has no direct path to (%d sent)", n)
	}
}
