package path

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/bind"
)

// EventKind says what the manager asks of the rest of the node.
type EventKind int

const (
	// EventRendezvous asks the coordinator to cue both sides to punch now.
	EventRendezvous EventKind = iota + 1
	// EventPathLost reports that a direct path stopped answering: this
	// node's own mapping may have changed (the node re-STUNs).
	EventPathLost
	// EventPunchTCP asks for a TCP hole punch to Remote, the peer's public
	// TCP mapping, after UDP punching failed; the result comes back by
	// SetTCPRoute (nil when it failed).
	EventPunchTCP
	// EventRelayUnanswered reports that relayed pings to an online peer
	// through the relay at Remote went unanswered, wire.RelayCheckMisses
	// in a row, the first sent at Since (relaycheck.go): evidence that the
	// relay does not carry the pair.
	EventRelayUnanswered
	// EventCoordinatorDoubted reports that Peer, over a direct path, says
	// its coordinator shows this node offline (offline.go): the node
	// checks its stream now.
	EventCoordinatorDoubted
)

// Event is one request from the manager, read from Events.
type Event struct {
	Kind   EventKind
	Peer   crypto.PublicKey
	Remote netip.AddrPort // EventPunchTCP, EventRelayUnanswered
	Since  time.Time      // EventRelayUnanswered
}

// eventQueue bounds events waiting for the consumer. The manager never
// waits for it: a stalled consumer (a coordinator that hangs) loses events,
// counted in Stats.EventsDropped, and the manager's timers, heartbeats and
// packet handling go on. Every event is a request that a later round
// repeats, so a lost one delays, never wedges.
const eventQueue = 256

// Events is where the manager posts its requests; the node reads it.
func (m *Manager) Events() <-chan Event { return m.events }

// post queues an event without blocking and reports whether it was queued.
func (m *Manager) post(e Event) bool {
	select {
	case m.events <- e:
		return true
	default:
		m.Stats.EventsDropped.Add(1)
		return false
	}
}

// unlock releases mu, then closes the auxiliary sockets collected under it.
func (m *Manager) unlock() {
	closing := m.closing
	m.closing = nil
	aux := m.aux
	m.mu.Unlock()
	if len(closing) > 0 && aux != nil {
		aux.CloseAux(closing...)
	}
}

// routeVar holds a route that the packet path reads without a lock.
type routeVar struct{ p atomic.Pointer[bind.Route] }

// Load returns the route, nil when there is none.
func (v *routeVar) Load() bind.Route {
	if r := v.p.Load(); r != nil {
		return *r
	}
	return nil
}

// Store sets the route; nil clears it.
func (v *routeVar) Store(r bind.Route) {
	if r == nil {
		v.p.Store(nil)
		return
	}
	v.p.Store(&r)
}
