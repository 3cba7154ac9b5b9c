// Package relay forwards WireGuard and discovery packets between nodes that
// have no direct path: over UDP (on the coordinator's STUN socket) and over
// WebSocket on the HTTPS port for networks that block UDP. A node first
// proves its key (hello → challenge → auth → ok, wire/relay.go); the relay
// then forwards its data frames to bound peers, naming the sender. Payloads
// stay end-to-end encrypted: the relay sees keys, never plaintext.
package relay

import (
	"crypto/rand"
	"crypto/subtle"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Per-node budget defaults.
const (
	// DefaultRate is each node's relay budget in bytes per second
	// (100 Mbit/s): enough for interactive use and bulk transfer while a
	// direct path is found, small enough that one node can't fill the
	// coordinator's uplink.
	DefaultRate = 12_500_000
	// DefaultBurst is each node's bucket size in bytes: about 80 ms at
	// DefaultRate, so TCP bursts pass without drops.
	DefaultBurst = 1 << 20
)

// Binding timing.
const (
	// bindingIdle expires a binding without refresh or traffic; it
	// outlives a node's belief that it is bound (wire.RelayBindingIdle).
	bindingIdle = wire.RelayBindingIdle
	// challengeTTL bounds how long an issued challenge may be answered:
	// generous for slow links (the client answers at once).
	challengeTTL = 10 * time.Second
	// sweepInterval spaces the scans that free expired entries.
	sweepInterval = 5 * time.Second
)

// Table bounds: memory stays bounded whatever arrives.
const (
	// maxBindings caps bound nodes; only registered nodes can bind.
	maxBindings = 1 << 16
	// maxChallenges caps outstanding challenges; hellos need no key, so
	// when full an arbitrary entry makes room (its node retries within
	// wire.RelayRetry).
	maxChallenges = 1 << 14
	// maxFrame is the largest relay frame: the largest packet a node
	// relays (wireguard-go's device.MaxMessageSize) and its header.
	maxFrame = wire.MaxRelayFrame
)

// Authorizer is the coordinator's view of who may relay. Both methods are
// called on the packet path, never with the relay's lock held, and must be
// cheap (in-memory lookups).
type Authorizer interface {
	Known(key crypto.PublicKey) bool     // a registered, not removed node
	ArePeers(a, b crypto.PublicKey) bool // a may send to b
}

// Options configure a Server.
type Options struct {
	// Key is the coordinator's static key; nodes prove theirs with
	// crypto.Proof(nodePriv, Key.Public(), wire.RelayProofLabel, challenge).
	Key  crypto.PrivateKey
	Auth Authorizer
	Log  *slog.Logger // nil discards
	// Registry receives the relay's metrics; nil registers none.
	Registry prometheus.Registerer
	// Rate (bytes/s) and Burst (bytes) are each node's token bucket;
	// zero or less means DefaultRate and DefaultBurst. A Burst below the
	// largest frame is raised to it so that every frame can pass.
	Rate  float64
	Burst int
}

// Server is a relay. It is safe for concurrent use.
type Server struct {
	key     crypto.PrivateKey
	auth    Authorizer
	log     *slog.Logger
	limit   rate.Limit
	burst   int
	metrics *metrics
	now     func() time.Time
	epoch   time.Time // origin of the monotonic stamps in bindings
	wsConns atomic.Int64
	bufs    sync.Pool // frame buffers for UDP forwarding

	lastSweep atomic.Int64 // stamp of the last sweep

	mu      sync.RWMutex
	byKey   map[crypto.PublicKey]*binding
	byEp    map[endpoint]*binding
	pending map[pendingKey]challenge
}

// New returns a Server. It panics without Options.Key or Options.Auth: a
// relay that can verify no one is a wiring mistake, not a runtime state.
func New(opts Options) *Server {
	if opts.Key.IsZero() {
		panic("relay.New: Options.Key is zero; pass the coordinator's static private key")
	}
	if opts.Auth == nil {
		panic("relay.New: Options.Auth is nil; pass the coordinator's Authorizer")
	}
	s := &Server{
		key:     opts.Key,
		auth:    opts.Auth,
		log:     opts.Log,
		limit:   rate.Limit(opts.Rate),
		burst:   opts.Burst,
		now:     time.Now,
		byKey:   make(map[crypto.PublicKey]*binding),
		byEp:    make(map[endpoint]*binding),
		pending: make(map[pendingKey]challenge),
		bufs: sync.Pool{New: func() any {
			b := make([]byte, 0, maxFrame)
			return &b
		}},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !(s.limit > 0) { // also NaN
		s.limit = DefaultRate
	}
	if s.burst <= 0 {
		s.burst = DefaultBurst
	}
	if s.burst < maxFrame {
		s.log.Warn("relay burst below the largest frame; raised so large frames can pass", "burst", s.burst, "raised_to", maxFrame)
		s.burst = maxFrame
	}
	s.epoch = s.now()
	s.metrics = newMetrics(s.boundCount)
	if opts.Registry != nil {
		if err := s.metrics.register(opts.Registry); err != nil {
			s.log.Warn("relay metrics not registered", "err", err)
		}
	}
	return s
}

// stamp is now as a monotonic offset from epoch, for atomics and stamps.
func (s *Server) stamp() int64 { return int64(s.now().Sub(s.epoch)) }

// HandlePacket processes one UDP datagram whose first bytes are
// wire.RelayMagic, received from from on a socket that send writes to. It
// may be called concurrently (one goroutine per socket). send must be
// non-nil and safe for concurrent use: a bound node is reached later
// through the send it bound with. pkt is neither retained nor modified.
func (s *Server) HandlePacket(pkt []byte, from netip.AddrPort, send func(pkt []byte, to netip.AddrPort) error) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	s.handle(pkt, origin{addr: from, send: send})
}

// Forget drops key's binding at once (the node was removed) and closes its
// WebSocket, if it has one.
func (s *Server) Forget(key crypto.PublicKey) {
	s.mu.Lock()
	b := s.byKey[key]
	if b != nil {
		s.removeLocked(b)
	}
	s.mu.Unlock()
	if b != nil {
		s.log.Info("relay binding forgotten", "node", key.Short())
		if b.ep.ws != nil {
			b.ep.ws.cancel()
		}
	}
}

// handle dispatches one frame from o.
func (s *Server) handle(pkt []byte, o origin) {
	s.maybeSweep()
	f, err := wire.ParseRelay(pkt)
	if err != nil {
		s.metrics.count(resGarbage)
		return
	}
	switch f.Type {
	case wire.RelayHello:
		s.hello(f.Key, o)
	case wire.RelayAuth:
		s.authenticate(f, o)
	case wire.RelayData:
		s.forward(f, len(pkt), o)
	default:
		// Challenge and OK only ever flow from a relay.
		s.metrics.count(resGarbage)
	}
}

// hello answers with a challenge for (o, key). A repeated hello gets the
// same challenge while it lives, so that a client retrying faster than the
// round trip still answers a challenge the relay holds.
func (s *Server) hello(key crypto.PublicKey, o origin) {
	pk := pendingKey{ep: o.endpoint(), key: key}
	now := s.stamp()
	s.mu.Lock()
	c, ok := s.pending[pk]
	if !ok || now > c.expires {
		if !ok && len(s.pending) >= maxChallenges {
			for k := range s.pending {
				delete(s.pending, k)
				break
			}
		}
		rand.Read(c.value[:]) // never fails (crypto/rand, Go 1.24+)
		c.expires = now + int64(challengeTTL)
		s.pending[pk] = c
	}
	s.mu.Unlock()
	s.metrics.count(resChallenged)
	s.reply(o, wire.RelayFrame{Type: wire.RelayChallenge, Challenge: c.value[:]}.Marshal())
}

// authenticate checks an auth frame and binds its key to o.
func (s *Server) authenticate(f wire.RelayFrame, o origin) {
	pk := pendingKey{ep: o.endpoint(), key: f.Key}
	now := s.stamp()
	s.mu.Lock()
	c, ok := s.pending[pk]
	match := ok && now <= c.expires && subtle.ConstantTimeCompare(c.value[:], f.Challenge) == 1
	if match {
		// Single use. A wrong answer leaves the challenge in place, so
		// a spoofer can't cancel a node's handshake.
		delete(s.pending, pk)
	}
	s.mu.Unlock()
	switch {
	case !match:
		s.metrics.count(resBadChallenge)
		return
	case !crypto.VerifyProof(s.key, f.Key, wire.RelayProofLabel, f.Challenge, f.Proof):
		s.metrics.count(resBadProof)
		return
	case !s.auth.Known(f.Key):
		s.metrics.count(resUnknownKey)
		return
	}
	okProof, err := crypto.Proof(s.key, f.Key, wire.RelayOKProofLabel, f.Challenge)
	if err != nil {
		s.metrics.count(resBadProof)
		return
	}
	okFrame := wire.RelayFrame{Type: wire.RelayOK, Challenge: f.Challenge, Proof: okProof}.Marshal()
	if !s.bind(f.Key, o, now, okFrame) {
		s.metrics.count(resTableFull)
		s.log.Warn("relay binding table full; node not bound", "node", f.Key.Short(), "max", maxBindings)
		return
	}
	s.metrics.count(resBound)
	if o.ws == nil {
		// Sent after binding, outside the lock; UDP clients accept data
		// before the OK.
		s.reply(o, okFrame)
	}
}

// forward relays a data frame from o to the peer it names.
func (s *Server) forward(f wire.RelayFrame, size int, o origin) {
	if k := wire.Classify(f.Payload); k != wire.KindWireGuard && k != wire.KindDisco {
		s.metrics.count(resBadPayload)
		return
	}
	t := s.now()
	now := int64(t.Sub(s.epoch))
	s.mu.RLock()
	src := live(s.byEp[o.endpoint()], now)
	dst := live(s.byKey[f.Key], now)
	s.mu.RUnlock()
	switch {
	case src == nil:
		s.metrics.count(resUnbound)
		return
	case !src.limit.AllowN(t, size):
		src.seen.Store(now)
		s.metrics.count(resRateLimited)
		return
	}
	src.seen.Store(now)
	switch {
	case dst == nil:
		// Unknown and offline look the same here: neither is bound.
		s.metrics.count(resOffline)
		return
	case src != dst && !s.auth.ArePeers(src.key, f.Key):
		// A frame a node addresses to itself is its echo, the check that
		// this relay carries its frames (wire.AppendRelayEcho).
		s.metrics.count(resNotPeer)
		return
	}
	var res result
	if dst.ep.ws != nil {
		res = dst.ep.ws.enqueue(wire.AppendRelayData(make([]byte, 0, size), src.key, f.Payload))
	} else {
		bp := s.bufs.Get().(*[]byte)
		frame := wire.AppendRelayData((*bp)[:0], src.key, f.Payload)
		res = resForwarded
		if err := dst.send(frame, dst.ep.addr); err != nil {
			res = resSendError
		}
		*bp = frame[:0]
		s.bufs.Put(bp)
	}
	s.metrics.count(res)
	if res == resForwarded {
		s.metrics.bytes.Add(float64(len(f.Payload)))
	}
}

// reply sends a control frame back where o came from.
func (s *Server) reply(o origin, frame []byte) {
	if o.ws != nil {
		if res := o.ws.enqueue(frame); res != resForwarded {
			s.metrics.count(res)
		}
		return
	}
	if err := o.send(frame, o.addr); err != nil {
		s.metrics.count(resSendError)
	}
}
