package relay

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// endpoint is where a node is reached: a UDP source address or one
// WebSocket. Exactly one field is set.
type endpoint struct {
	addr netip.AddrPort
	ws   *wsConn
}

func (e endpoint) String() string {
	if e.ws != nil {
		return "websocket"
	}
	return e.addr.String()
}

// origin is where a frame came from and how to answer it: a UDP source
// (addr, as the socket sock reported it in to) or a WebSocket.
type origin struct {
	addr netip.AddrPort
	to   net.Addr
	sock *udpSock
	ws   *wsConn
}

func (o origin) endpoint() endpoint { return endpoint{addr: o.addr, ws: o.ws} }

// pendingKey names an issued challenge: the key it was issued for, at the
// endpoint that asked. An answer from anywhere else does not match.
type pendingKey struct {
	ep  endpoint
	key crypto.PublicKey
}

type challenge struct {
	value   [wire.RelayChallengeLen]byte
	expires int64 // stamp
}

// binding is a proven key at an endpoint. Only seen changes after creation;
// a node that moves gets a new binding (and keeps its limiter).
type binding struct {
	key crypto.PublicKey
	ep  endpoint
	// A UDP endpoint is reached through sock (of the port it bound
	// through), at to (ep.addr, built once for the sends).
	sock  *udpSock
	to    net.Addr
	limit *rate.Limiter
	seen  atomic.Int64 // stamp of the last refresh or sent frame
}

// seenStep is how stale seen may be: a sender's every frame would
// otherwise write the binding that other cores read, and idleness is
// judged in minutes (bindingIdle).
const seenStep = int64(time.Second)

// touch records traffic at now.
func (b *binding) touch(now int64) {
	if now-b.seen.Load() >= seenStep {
		b.seen.Store(now)
	}
}

// live returns b unless it is nil or a UDP binding idle for longer than
// bindingIdle. A WebSocket binding lives as long as its socket, which the
// relay's pings check.
func live(b *binding, now int64) *binding {
	if b == nil || b.ep.ws == nil && now-b.seen.Load() > int64(bindingIdle) {
		return nil
	}
	return b
}

// bind binds key to o, replacing the key's older binding (the node roamed)
// and whatever key o's endpoint spoke for before. It reports false when the
// table is full. On a WebSocket it queues ok before the binding becomes
// visible, so no forwarded frame overtakes it: a stream client reads the
// OK as the end of its handshake.
func (s *Server) bind(key crypto.PublicKey, o origin, now int64, ok []byte, k *sink) bool {
	ep := o.endpoint()
	s.mu.Lock()
	defer s.mu.Unlock()
	announce := func() {
		if ep.ws != nil {
			if r := ep.ws.enqueue(ok); r != resForwarded {
				k.count(r)
			}
		}
	}
	old := s.byKey[key]
	if old != nil && old.ep == ep && (ep.ws != nil || old.sock.port == o.sock.port) {
		old.seen.Store(now)
		announce()
		return true
	}
	if other := s.byEp[ep]; other != nil {
		s.removeLocked(other)
	}
	var limit *rate.Limiter
	if old != nil {
		// Keep the bucket: re-binding must not refill it.
		limit = old.limit
		s.removeLocked(old)
		s.log.Info("relay node moved", "node", key.Short(), "from", old.ep, "to", ep)
	} else {
		if len(s.byKey) >= maxBindings {
			s.sweepLocked(now)
		}
		if len(s.byKey) >= maxBindings {
			return false
		}
		limit = rate.NewLimiter(s.limit, s.burst)
		s.log.Debug("relay node bound", "node", key.Short(), "at", ep)
	}
	announce()
	b := &binding{key: key, ep: ep, sock: o.sock, limit: limit}
	if ep.ws == nil {
		b.to = net.UDPAddrFromAddrPort(ep.addr)
	}
	b.seen.Store(now)
	s.byKey[key] = b
	s.byEp[ep] = b
	s.gen.Add(1)
	if ep.ws != nil {
		ep.ws.bound.Store(true)
	}
	return true
}

// unbindEndpoint drops the binding at ep, if any (its WebSocket closed).
func (s *Server) unbindEndpoint(ep endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.byEp[ep]; b != nil {
		s.removeLocked(b)
	}
}

func (s *Server) removeLocked(b *binding) {
	s.gen.Add(1)
	if s.byKey[b.key] == b {
		delete(s.byKey, b.key)
	}
	if s.byEp[b.ep] == b {
		delete(s.byEp, b.ep)
	}
	if b.ep.ws != nil {
		b.ep.ws.bound.Store(false)
	}
}

// maybeSweep frees expired entries at most once per sweepInterval, so that
// the tables hold only live state without a goroutine of their own.
func (s *Server) maybeSweep(now int64) {
	last := s.lastSweep.Load()
	if now-last < int64(sweepInterval) || !s.lastSweep.CompareAndSwap(last, now) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
}

func (s *Server) sweepLocked(now int64) {
	for _, b := range s.byKey {
		if live(b, now) == nil {
			s.removeLocked(b)
		}
	}
	for k, c := range s.pending {
		if now > c.expires {
			delete(s.pending, k)
		}
	}
}

// boundCount is the number of live bindings, for the gauge.
func (s *Server) boundCount() int {
	now := s.stamp()
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, b := range s.byKey {
		if live(b, now) != nil {
			n++
		}
	}
	return n
}
