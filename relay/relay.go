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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Per-node budget defaults, chosen from measurements (bench/RESULTS.md,
// "Relays close to direct"). A node's frames all arrive on one socket, so
// one reader on one core carries them (ListenUDP): a node can never take
// more than a core, which forwards 2.3-2.8 Gbit/s of full-size frames on
// the CI machine (BenchmarkRelayCore, CPU time). The budget is 1000
// Mbit/s, 40% of that: two nodes in bulk that the kernel hashes onto one
// socket both get all of it and leave the reader time for the small
// packets of the others, while a relayed pair is held near what direct
// pairs carry on the same machine (1.1-1.5 Gbit/s in the real-kernel lab,
// bench/NATMATRIX.md), not a tenth of it as the earlier 100 Mbit/s held
// it. An uplink smaller than that is the operator's to protect: the
// coordinator's relay_rate sets the budget.
const (
	// DefaultRateMbit is each node's budget in Mbit/s.
	DefaultRateMbit = 1000
	// DefaultRate is DefaultRateMbit in bytes per second.
	DefaultRate = DefaultRateMbit * 1_000_000 / 8
	// burstWindow sizes each node's bucket: 80 ms at its rate (10 MB at
	// the default), so the bursts of a TCP window pass without drops.
	burstWindow = 80 * time.Millisecond
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
	// zero or less means DefaultRate and burstWindow at Rate. A Burst
	// below the largest frame is raised to it so that every frame can
	// pass.
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

	lastSweep atomic.Int64 // stamp of the last sweep

	// gen counts changes to byKey and byEp (under mu): readers cache
	// their lookups while it stands (view).
	gen atomic.Uint64

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
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !(s.limit > 0) { // also NaN
		s.limit = DefaultRate
	}
	switch {
	case s.burst <= 0:
		s.burst = max(maxFrame, int(float64(s.limit)*burstWindow.Seconds()))
	case s.burst < maxFrame:
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

// handle dispatches one frame from o, in a batch that k began. A data
// frame is forwarded in place: pkt's key is rewritten to name its sender.
func (s *Server) handle(pkt []byte, o origin, k *sink) {
	f, err := wire.ParseRelay(pkt)
	if err != nil {
		k.count(resGarbage)
		return
	}
	switch f.Type {
	case wire.RelayHello:
		s.hello(f.Key, o, k)
	case wire.RelayAuth:
		s.authenticate(f, o, k)
	case wire.RelayData:
		s.forward(f, pkt, o, k)
	default:
		// Challenge and OK only ever flow from a relay.
		k.count(resGarbage)
	}
}

// hello answers with a challenge for (o, key). A repeated hello gets the
// same challenge while it lives, so that a client retrying faster than the
// round trip still answers a challenge the relay holds.
func (s *Server) hello(key crypto.PublicKey, o origin, k *sink) {
	pk := pendingKey{ep: o.endpoint(), key: key}
	now := k.stamp
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
	k.count(resChallenged)
	s.reply(o, wire.RelayFrame{Type: wire.RelayChallenge, Challenge: c.value[:]}.Marshal(), k)
}

// authenticate checks an auth frame and binds its key to o.
func (s *Server) authenticate(f wire.RelayFrame, o origin, k *sink) {
	pk := pendingKey{ep: o.endpoint(), key: f.Key}
	now := k.stamp
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
		k.count(resBadChallenge)
		return
	case !crypto.VerifyProof(s.key, f.Key, wire.RelayProofLabel, f.Challenge, f.Proof):
		k.count(resBadProof)
		return
	case !s.auth.Known(f.Key):
		k.count(resUnknownKey)
		return
	}
	okProof, err := crypto.Proof(s.key, f.Key, wire.RelayOKProofLabel, f.Challenge)
	if err != nil {
		k.count(resBadProof)
		return
	}
	okFrame := wire.RelayFrame{Type: wire.RelayOK, Challenge: f.Challenge, Proof: okProof}.Marshal()
	if !s.bind(f.Key, o, now, okFrame, k) {
		k.count(resTableFull)
		s.log.Warn("relay binding table full; node not bound", "node", f.Key.Short(), "max", maxBindings)
		return
	}
	k.count(resBound)
	if o.ws == nil {
		// Sent after binding, outside the lock; UDP clients accept data
		// before the OK.
		s.reply(o, okFrame, k)
	}
}

// forward relays a data frame from o to the peer it names.
func (s *Server) forward(f wire.RelayFrame, pkt []byte, o origin, k *sink) {
	if kind := wire.Classify(f.Payload); kind != wire.KindWireGuard && kind != wire.KindDisco {
		k.count(resBadPayload)
		return
	}
	src, dst := k.view.lookup(s, o.endpoint(), f.Key)
	src, dst = live(src, k.stamp), live(dst, k.stamp)
	switch {
	case src == nil:
		k.count(resUnbound)
		return
	case !src.limit.AllowN(k.now, len(pkt)):
		src.touch(k.stamp)
		k.count(resRateLimited)
		return
	}
	src.touch(k.stamp)
	switch {
	case dst == nil:
		// Unknown and offline look the same here: neither is bound.
		k.count(resOffline)
		return
	case src != dst && !k.view.peers(s.auth, src, dst):
		// A frame a node addresses to itself is its echo, the check that
		// this relay carries its frames (wire.AppendRelayEcho).
		k.count(resNotPeer)
		return
	}
	if dst.ep.ws != nil {
		res := dst.ep.ws.enqueue(wire.AppendRelayData(make([]byte, 0, len(pkt)), src.key, f.Payload))
		k.count(res)
		if res == resForwarded {
			k.bytes += len(f.Payload)
		}
		return
	}
	wire.SetRelayKey(pkt, src.key)
	k.send(dst.sock, pkt, dst.to, len(f.Payload))
}

// reply sends a control frame back where o came from.
func (s *Server) reply(o origin, frame []byte, k *sink) {
	if o.ws != nil {
		if res := o.ws.enqueue(frame); res != resForwarded {
			k.count(res)
		}
		return
	}
	k.send(o.sock, frame, o.to, reply)
}
