// Package path is meshnode's path manager: for every peer it gathers
// candidate addresses, punches through NATs with sealed discovery pings,
// picks the best path that answers, keeps it open with heartbeats, notices
// when it dies and punches again, and falls back to a relay meanwhile.
package path

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/pmtu"
)

// KindPeerReflexive marks a candidate learned from a ping's source address
// (ICE's peer-reflexive candidate, RFC 8445 §7.3.1.3).
const KindPeerReflexive = "prflx"

// maxPeerReflexive bounds the candidates a peer's pings can add, so a peer
// roaming through many NAT mappings can't grow our state without limit.
const maxPeerReflexive = 8

// Sockets is what the manager sends with (the Bind): raw discovery packets
// from the shared socket (sock 0) or an auxiliary one of the birthday
// technique, and direct routes for the packet path.
type Sockets interface {
	WriteVia(pkt []byte, to netip.AddrPort, sock int) error
	Direct(addr netip.AddrPort, sock int) bind.Route
	// WriteTTL sends with the given TTL (order.go) from socket sock;
	// CanSendTTL reports whether the shared socket can. Neither blocks.
	WriteTTL(pkt []byte, to netip.AddrPort, sock, ttl int) error
	CanSendTTL() bool
	// ResendHandshake sends the peer's unanswered WireGuard handshake
	// message again, if one waits (bind/handshake.go): the manager
	// calls it when a route to the peer may just have become usable, and
	// when the peer just showed it is up (a discovery packet from it). It
	// must not block.
	ResendHandshake(peer crypto.PublicKey)
}

// Aux opens and closes auxiliary sockets (bind.Bind does). The manager
// calls it only with no lock of its own held: opening hundreds of sockets
// must not stall the packet paths.
type Aux interface {
	OpenAux(n int) ([]int, error)
	CloseAux(ids ...int)
}

// PeerInfo is what the coordinator says of a peer.
type PeerInfo struct {
	Key       crypto.PublicKey
	Name      string
	Online    bool
	Endpoints []wire.Endpoint
	// NAT is what the peer learned of its NAT, for hard-NAT techniques.
	NAT *wire.NATInfo
}

// Manager implements bind.Router.
//
// Locking: mu guards the slow-path state (peers and what hangs off them).
// The packet paths read the hot-path state (routes, byAddr, relay) without
// it. Under mu the manager only decides: packets to send, sockets to open
// or close and events to post are collected and acted on after Unlock, so
// no network I/O, socket creation or blocking send happens under mu. mu is
// never held while calling into the Bind, so the two never nest.
type Manager struct {
	sealer *crypto.Sealer
	socks  Sockets
	events chan Event
	t      Timing
	log    *slog.Logger

	// Hot-path state, read without the lock by the Bind.
	routes sync.Map // crypto.PublicKey → *route
	byAddr sync.Map // netip.AddrPort → *addrEntry (sources confirmed by a pong)
	relay  routeVar
	// idle is the idle heartbeat interval (nanoseconds; 0: Timing.Keepalive),
	// read by the pruner without the lock.
	idle atomic.Int64
	// strays are sources of WireGuard packets no peer is confirmed at,
	// for Run to look up (stray.go), within strayLimit.
	strays     chan netip.AddrPort
	strayLimit *rate.Limiter

	Stats Stats

	mu    sync.Mutex
	peers map[crypto.PublicKey]*peer
	// self is this node's own NAT, for choosing hard-NAT techniques.
	self wire.NATInfo
	aux  Aux
	// tcpPunch allows EventPunchTCP.
	tcpPunch bool
	// scope narrows which claimed addresses may be probed; nil: bogons only.
	scope  Scope
	budget budget
	// closing lists auxiliary sockets to close once mu is released.
	closing []int
	// idleCeiling bounds the idle interval after a path died at a longer
	// one; 0: none yet.
	idleCeiling time.Duration
	// relayCheck is the UDP relay checked with relayed pings (relaycheck.go);
	// nextRelayCheck is when the next check is due.
	relayCheck     netip.AddrPort
	nextRelayCheck time.Time
	// Path MTU discovery (mtu.go), on when mtuCfg.Ceil is set.
	mtuCfg    pmtu.Config
	mtuSink   MTUSink
	kernelMTU func(netip.Addr) (int, error)
	// saidNoTTL: the node said once that it can't prime (order.go).
	saidNoTTL bool
}

// Stats counts discovery events.
type Stats struct {
	PingsSent, PongsReceived, PingsReceived atomic.Uint64
	BirthdayAttempts, BirthdayWins          atomic.Uint64
	Rejected                                atomic.Uint64 // forged, replayed, unknown-peer or malformed
	PathsFound, PathsLost                   atomic.Uint64
	EventsDropped                           atomic.Uint64 // events the consumer was too slow for
	PunchThrottled                          atomic.Uint64 // punch packets over the per-peer or total budget, not sent
	CallMeMaybeDropped                      atomic.Uint64 // call-me-maybe and ready messages over the per-peer rate, ignored
	Unvouched                               atomic.Uint64 // call-me-maybe addresses the coordinator did not vouch for, not probed
	// Ordered punching (order.go): low-TTL primes sent, readies sent to
	// and received from peers.
	PrimesSent, ReadySent, ReadyReceived atomic.Uint64
	// Punch rounds begun, and those that ended without a direct path.
	RoundsStarted, RoundsFailed atomic.Uint64
	// Offline notices (offline.go) sent to peers the coordinator showed
	// offline over a direct path, and received from peers.
	OfflineSent, OfflineReceived atomic.Uint64
}

// route is a peer's hot-path state.
type route struct {
	direct routeVar
	tcp    routeVar // a punched TCP path
	online atomic.Bool
	lastTx atomic.Int64 // unix nanoseconds of the last send
	want   atomic.Bool  // a send found no path
}

// New returns a manager sealing with sealer and sending through socks.
func New(sealer *crypto.Sealer, socks Sockets, t Timing, log *slog.Logger) *Manager {
	return &Manager{
		sealer:     sealer,
		socks:      socks,
		events:     make(chan Event, eventQueue),
		strays:     make(chan netip.AddrPort, strayQueue),
		strayLimit: newStrayLimit(),
		t:          t,
		budget:     newBudget(t),
		log:        log,
		peers:      make(map[crypto.PublicKey]*peer),
	}
}

// RouteTo implements bind.Router: the direct path when one answers, else a
// punched TCP path, else the relay while the peer is online, else none (and
// a path is sought).
func (m *Manager) RouteTo(key crypto.PublicKey) bind.Route {
	v, ok := m.routes.Load(key)
	if !ok {
		return nil
	}
	r := v.(*route)
	r.lastTx.Store(time.Now().UnixNano())
	if d := r.direct.Load(); d != nil {
		return d
	}
	if t := r.tcp.Load(); t != nil {
		return t
	}
	if rl := m.relay.Load(); rl != nil && r.online.Load() {
		return rl
	}
	r.want.Store(true)
	return nil
}

// PeerAt implements bind.Router.
func (m *Manager) PeerAt(addr netip.AddrPort) (crypto.PublicKey, bool) {
	v, ok := m.byAddr.Load(addr)
	if !ok {
		return crypto.PublicKey{}, false
	}
	return v.(*addrEntry).key, true
}

// IsPeer implements bind.Router.
func (m *Manager) IsPeer(key crypto.PublicKey) bool {
	_, ok := m.routes.Load(key)
	return ok
}

// SetSelfNAT records what this node learned of its own NAT.
func (m *Manager) SetSelfNAT(n wire.NATInfo) {
	m.mu.Lock()
	m.self = n
	m.mu.Unlock()
}

// EnableTCPPunch lets the manager ask for TCP hole punches (EventPunchTCP)
// after UDP punching fails.
func (m *Manager) EnableTCPPunch() {
	m.mu.Lock()
	m.tcpPunch = true
	m.mu.Unlock()
}

// SetScope sets which claimed addresses may be probed (see Scope). It
// applies to candidates learned from then on.
func (m *Manager) SetScope(s Scope) {
	m.mu.Lock()
	m.scope = s
	m.mu.Unlock()
}

// SetAux enables the birthday technique with auxiliary sockets.
func (m *Manager) SetAux(a Aux) {
	m.mu.Lock()
	m.aux = a
	m.mu.Unlock()
}

// SetTCPRoute sets (or, with nil, clears) a peer's punched TCP path.
func (m *Manager) SetTCPRoute(key crypto.PublicKey, r bind.Route) {
	m.mu.Lock()
	p, ok := m.peers[key]
	if !ok {
		m.mu.Unlock()
		return
	}
	p.route.tcp.Store(r)
	if r == nil {
		p.tcpTrying = false
		p.nextTCP = time.Now().Add(m.t.TCPRetry)
		// Back on the UDP relay, packets must fit it at once.
		m.unlockNotingMTU(p)
		return
	}
	m.log.Info("direct TCP path up", "peer", p.name, "endpoint", r.Info().Via)
	m.unlockNotingMTU(p)
	m.socks.ResendHandshake(key)
}

// SetRelay sets the relay route used for peers without a direct path; nil
// means no relay is available. The MTUs of the peers it carries change
// with it; readies and handshakes that found no path before go now.
func (m *Manager) SetRelay(r bind.Route) {
	m.relay.Store(r)
	m.refreshMTUs()
	if r == nil {
		return
	}
	m.relayBound()
	m.routes.Range(func(k, _ any) bool {
		m.socks.ResendHandshake(k.(crypto.PublicKey))
		return true
	})
}

// RelayAt implements bind.Router: relayed frames are taken only from the
// UDP relay this node is bound to, so nobody else can inject frames that
// claim to come from a peer.
func (m *Manager) RelayAt(a netip.AddrPort) bool {
	r := m.relay.Load()
	if r == nil {
		return false
	}
	i := r.Info()
	return i.Kind == bind.KindRelay && i.Addr.IsValid() && i.Addr == a
}

// UpsertPeer adds or updates a peer from the coordinator's map. New
// candidates, or a peer coming online, start a punch round at once: the
// coordinator pushes the change to both sides, so both punch together.
func (m *Manager) UpsertPeer(info PeerInfo) {
	now := time.Now()
	m.mu.Lock()
	p, ok := m.peers[info.Key]
	if !ok {
		p = newPeer(info.Key, m.t)
		if m.mtuCfg.Ceil > 0 {
			p.mtu = pmtu.NewSearch(m.mtuCfg)
		}
		m.peers[info.Key] = p
		m.routes.Store(info.Key, p.route)
	}
	p.name = info.Name
	cameOnline := info.Online && !p.online
	var out []outPkt
	if p.online && !info.Online {
		out = m.appendOffline(p, out)
	}
	p.online = info.Online
	p.route.online.Store(info.Online)
	p.nat = info.NAT
	p.setVouched(info.Endpoints)
	changed := p.setCandidates(info.Endpoints, m.permit)
	if changed {
		p.mappingsMoved(now)
	}
	if cameOnline {
		// A peer back online starts afresh: its NAT's state of before,
		// which a quiet period waits out, is gone or stale.
		p.orderedFails, p.quietUntil = 0, time.Time{}
	}
	if info.Online && (cameOnline || changed) {
		m.startRound(p, now)
	}
	// A new peer starts on the relay, if any: its MTU applies at once.
	m.unlockNotingMTU(p)
	m.send(out)
	if cameOnline {
		// The relay carries an online peer: a handshake waiting for it
		// goes now.
		m.socks.ResendHandshake(info.Key)
	}
}

// RemovePeer forgets a peer that left the mesh.
func (m *Manager) RemovePeer(key crypto.PublicKey) {
	m.mu.Lock()
	if p, ok := m.peers[key]; ok {
		m.closeAux(p, 0)
	}
	delete(m.peers, key)
	m.unlock()
	m.routes.Delete(key)
	m.byAddr.Range(func(a, v any) bool {
		if v.(*addrEntry).key == key {
			m.byAddr.CompareAndDelete(a, v)
		}
		return true
	})
	m.sealer.Forget(key)
}

// Punch handles the coordinator's cue: merge the peer's candidates and punch
// now, without asking for another cue.
func (m *Manager) Punch(key crypto.PublicKey, eps []wire.Endpoint, nat *wire.NATInfo) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[key]
	if !ok {
		return
	}
	if nat != nil {
		p.nat = nat
	}
	p.setVouched(eps)
	if p.setCandidates(eps, m.permit) {
		p.mappingsMoved(now)
	}
	m.startRound(p, now)
}

// Repunch starts a round with every peer, after this node's own mapping
// changed (re-STUN differs, a link changed), and measures every direct
// path's MTU again: a path kept across the change may run over another
// link now. The scope may have changed with the links, so each peer's
// candidates are filtered again.
func (m *Manager) Repunch() {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.peers {
		p.setCandidates(p.given, m.permit)
		if p.online {
			p.mappingsMoved(now)
			m.startRound(p, now)
			p.wantRendezvous = true
		}
		if p.hasBest {
			p.startMTU()
		}
	}
}
