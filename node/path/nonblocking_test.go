package path

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// heartbeatsFlow waits until n has received more pongs on its path to peer
// than it had, at least rounds more: the heartbeat is alive.
func heartbeatsFlow(t *testing.T, n *node, rounds uint64, what string) {
	t.Helper()
	start := n.m.Stats.PongsReceived.Load()
	wait.For(t, 20*time.Second, what, func() bool {
		n.m.RouteTo(n.key) // keep the path active: heartbeats at the active rate
		return n.m.Stats.PongsReceived.Load() >= start+rounds
	})
}

// Nobody reads the manager's events (a node whose coordinator hangs): the
// manager drops them, counted, and its heartbeats and paths go on.
func TestUnreadEventsDisturbNoPath(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.RendezvousGap = time.Millisecond
	tm.ActiveHeartbeat = 20 * time.Millisecond
	tm.Keepalive = 20 * time.Millisecond
	a, b := newFabric().pair(t, tm)
	// Many online peers, each asking for a rendezvous on every Repunch:
	// more than the queue holds.
	for range eventQueue {
		a.m.UpsertPeer(PeerInfo{Key: newKey(t), Name: "quiet", Online: true})
	}
	wait.For(t, 20*time.Second, "the event queue overflowing", func() bool {
		a.m.Repunch()
		return a.m.Stats.EventsDropped.Load() > 0
	})
	heartbeatsFlow(t, a, 20, "a's heartbeats to b answered while its events go unread")
	if lost := a.m.Stats.PathsLost.Load(); lost != 0 {
		t.Errorf("a lost its path %d times while its events went unread", lost)
	}
	if p := a.m.Path(b.key); p.Path != PathDirect || p.Endpoint != b.addr {
		t.Errorf("a's path to b = %+v, want direct to %v", p, b.addr)
	}
}

// stuckAux is an Aux whose OpenAux blocks until released, as opening 256
// sockets on a loaded host may.
type stuckAux struct {
	entered, release chan struct{}
}

func (s stuckAux) OpenAux(n int) ([]int, error) {
	s.entered <- struct{}{}
	<-s.release
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	return ids, nil
}

func (stuckAux) CloseAux(...int) {}

// Opening the birthday technique's sockets happens with no manager lock
// held: while it is stuck, discovery from other peers is answered, ticks
// run and status reads the manager.
func TestOpeningBirthdaySocketsBlocksNothing(t *testing.T) {
	t.Parallel()
	tm := fastTiming()
	tm.PunchDuration = 100 * time.Millisecond
	tm.ActiveHeartbeat = 20 * time.Millisecond
	tm.Keepalive = 20 * time.Millisecond
	a, b := newFabric().pair(t, tm)

	aux := stuckAux{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(aux.release)
	a.m.SetAux(aux)
	a.m.SetSelfNAT(wire.NATInfo{Mapping: wire.MappingAddressPortDependent, PortAlloc: wire.PortAllocRandom})
	// An easy peer that never answers: its round fails and a, the hard
	// side, starts the birthday technique.
	c := netip.MustParseAddrPort("198.18.3.1:41820")
	a.m.UpsertPeer(PeerInfo{Key: newKey(t), Name: "c", Online: true,
		Endpoints: []wire.Endpoint{{Addr: c, Kind: wire.EndpointSTUN}},
		NAT:       &wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocPreserve}})
	select {
	case <-aux.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the birthday technique never opened its sockets")
	}
	// OpenAux is stuck now. b's heartbeats still get a's pongs, and a's
	// own lock is free.
	heartbeatsFlow(t, b, 20, "b's heartbeats answered by a while a opens sockets")
	if p := a.m.Path(b.key); p.Path != PathDirect {
		t.Errorf("a's path to b = %+v while opening sockets, want direct", p)
	}
}

func newKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}
