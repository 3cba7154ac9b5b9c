// Package relayclient owns this node's relay policy: which UDP relay to
// bind to (the one every node agrees on), the binding itself (hello →
// challenge → auth → ok, refreshed), the check that a relay node carries
// this node's traffic (health.go), and the coordinator's TCP (WebSocket)
// relay as the fallback where UDP is blocked. The node hears back the best
// relay route each time it changes, the relay node the path manager should
// check, and reports of a relay node that does not carry.
package relayclient

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// Sockets sends from the node's shared UDP socket and makes relay routes:
// the *bind.Bind.
type Sockets interface {
	WriteTo(pkt []byte, to netip.AddrPort) error
	UDPRelay(addr netip.AddrPort) bind.Route
	Stream(s bind.FrameSender, info bind.RouteInfo) bind.Route
}

// Options configure Relays.
type Options struct {
	Priv    crypto.PrivateKey
	Sockets Sockets
	// The TCP relay: the coordinator's WebSocket relay under
	// CoordinatorURL (its https URL), reached with HTTPClient (pinned to
	// its certificate), proved to CoordinatorKey. An empty CoordinatorURL
	// turns the TCP fallback off.
	CoordinatorURL string
	HTTPClient     *http.Client
	CoordinatorKey crypto.PublicKey
	// HTTPClientFor makes the client for another coordinator's TCP
	// relay, pinned to its certificate's pin: the one the candidate of
	// SetCandidates names (Candidate.URL, where several coordinators
	// serve the mesh), so that a node whose UDP is blocked meets its
	// peers on the relay they bind. Nil keeps the TCP relay at
	// CoordinatorURL.
	HTTPClientFor func(pin string) *http.Client
	// Deliver hands frames received over the TCP relay to the Bind
	// (bind.Bind.DeliverFrame); it must not block.
	Deliver func(frame []byte)
	// OnRoute hears the best relay route each time it changes; nil means
	// no relay. It is called from Run's goroutine with no lock held, never
	// after Run returns; relay control waits while it runs.
	OnRoute func(bind.Route)
	// Report hears that the relay node with key relay did not carry this
	// node's traffic (health.go): peer is nil when the evidence is this
	// node's own echoes, else the peer whose relayed pings went
	// unanswered. The node tells the coordinator; nil only logs. It is
	// called from Run's goroutine and must not block.
	Report func(relay crypto.PublicKey, peer *crypto.PublicKey)
	// OnCheck hears the address of the UDP relay whose carrying the path
	// manager should check with relayed pings (path.Manager.CheckRelay):
	// the relay node while bound to it; invalid otherwise. Called like
	// OnRoute; nil ignores it.
	OnCheck func(netip.AddrPort)
	Log     *slog.Logger // nil discards
	Timing  Timing
}

// Status is what the relays are doing.
type Status struct {
	Relay    Candidate      // the chosen UDP relay; zero when there is none
	Addr     netip.AddrPort // its address; invalid until resolved
	UDPBound bool           // the UDP relay confirmed this node's key
	TCPUp    bool           // the TCP relay stream is bound
	// Carried is when a relay node last carried this node's echo back;
	// zero while the relay is the coordinator's (not checked).
	Carried time.Time
	// Coordinator: the chosen relay is a coordinator's (SetCandidates'
	// coordinator, this node's or the mesh's), not a relay node.
	Coordinator bool
}

// Stats counts what the relays dropped, checked and reported; safe to read
// concurrently.
type Stats struct {
	// StreamDropped counts frames to the TCP relay dropped on a full send
	// queue (the connection is slower than the traffic, or stalled).
	StreamDropped atomic.Uint64
	// ControlDropped counts relay control frames, echoes and path
	// evidence dropped because Run had not taken the earlier ones yet.
	ControlDropped atomic.Uint64
	// Checks counts the check rounds of a relay node judged (health.go);
	// Reports the reports that one did not carry, and ReportsDropped
	// those over the report budget, not sent.
	Checks, Reports, ReportsDropped atomic.Uint64
	// TCPFallbacks counts the times the UDP relay went silent and the TCP
	// relay was opened.
	TCPFallbacks atomic.Uint64
}

// controlQueue bounds control frames waiting for Run: a relay answers each
// hello with one frame, so more than a few only come from a spoofer.
const controlQueue = 16

// controlFrame is a control frame from the shared socket, owned by Run.
type controlFrame struct {
	pkt  []byte
	from netip.AddrPort
}

// streamEvent is a TCP relay session coming up (sender) or ending (nil),
// from the wanted period gen.
type streamEvent struct {
	gen    uint64
	sender bind.FrameSender
}

// Relays is the one owner of the node's relays. Run's goroutine makes
// every decision; the other methods only hand it input.
type Relays struct {
	Stats Stats

	priv     crypto.PrivateKey
	socks    Sockets
	timing   Timing
	log      *slog.Logger
	onRoute  func(bind.Route)
	onReport func(relay crypto.PublicKey, peer *crypto.PublicKey)
	onCheck  func(netip.AddrPort)
	opts     Options       // what New was given, with defaults: for retargetStream
	own      *streamClient // this node's coordinator's TCP relay; nil: no TCP fallback
	stream   *streamClient // the TCP relay in use: own, or the chosen coordinator's

	kick    chan struct{} // candidates changed
	control chan controlFrame
	events  chan streamEvent
	echoes  chan [wire.RelayEchoTokenLen]byte
	misses  chan peerMiss
	// server is the UDP relay's address, and witnessPub the coordinator's
	// relay's while it witnesses (health.go), published by Run so that
	// HandleControl drops frames from elsewhere without asking it.
	server     atomic.Pointer[netip.AddrPort]
	witnessPub atomic.Pointer[netip.AddrPort]
	// refresh is a new refresh interval for Run to apply (0: none).
	refresh atomic.Int64
	// rtt is the last round trip to the coordinator (nanoseconds; 0: not
	// known), from SetCoordinatorRTT.
	rtt atomic.Int64

	// mu guards the candidates (SetCandidates writes, Run reads) and the
	// status (Run writes, Status reads).
	mu     sync.Mutex
	coord  Candidate
	nodes  []Candidate
	status Status

	// Run's goroutine owns the rest.
	udp         udpBinding
	chosen      Candidate
	coordCand   Candidate // the coordinator's relay, as last chosen from
	health      health
	witness     netip.AddrPort // the coordinator's relay, resolved
	nextWitness time.Time
	reports     *rate.Limiter
	resolved    bool // udp.server is chosen's address
	nextResolve time.Time
	streamGen   uint64
	streamStop  context.CancelFunc // non-nil while the TCP relay is wanted
	streams     sync.WaitGroup
	tcpRoute    bind.Route
	best        bind.Route
	checked     netip.AddrPort // last given to onCheck
}

// New returns Relays; Run starts them. It panics on missing wiring
// (Priv, Sockets, OnRoute; HTTPClient and Deliver with a CoordinatorURL):
// a mistake in the program, not a runtime state.
func New(o Options) *Relays {
	switch {
	case o.Priv.IsZero():
		panic("relayclient.New: Options.Priv is zero")
	case o.Sockets == nil:
		panic("relayclient.New: Options.Sockets is nil; pass the node's Bind")
	case o.OnRoute == nil:
		panic("relayclient.New: Options.OnRoute is nil")
	case o.CoordinatorURL != "" && (o.HTTPClient == nil || o.Deliver == nil):
		panic("relayclient.New: the TCP relay needs Options.HTTPClient and Options.Deliver")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Timing = o.Timing.withDefaults()
	if o.Report == nil {
		o.Report = func(crypto.PublicKey, *crypto.PublicKey) {}
	}
	if o.OnCheck == nil {
		o.OnCheck = func(netip.AddrPort) {}
	}
	r := &Relays{
		priv:     o.Priv,
		socks:    o.Sockets,
		timing:   o.Timing,
		log:      o.Log,
		onRoute:  o.OnRoute,
		onReport: o.Report,
		onCheck:  o.OnCheck,
		kick:     make(chan struct{}, 1),
		control:  make(chan controlFrame, controlQueue),
		events:   make(chan streamEvent),
		echoes:   make(chan [wire.RelayEchoTokenLen]byte, controlQueue),
		misses:   make(chan peerMiss, controlQueue),
		udp:      udpBinding{priv: o.Priv, socks: o.Sockets, timing: o.Timing, log: o.Log},
		reports:  rate.NewLimiter(rate.Every(wire.RelayReportEvery), wire.RelayReportBurst),
	}
	if o.CoordinatorURL != "" {
		r.opts = o
		r.own = newStreamClient(o, &r.Stats)
		r.stream = r.own
	}
	return r
}

// SetCoordinator makes the coordinator at url (its https URL), reached
// with hc (pinned to its certificate), the one the relay over TCP dials
// from its next session on, unless the mesh's relay is another
// coordinator's (retargetStream): the node's stream failed over to it. A
// session bound to the old one ends when that coordinator is gone. A
// no-op without the relay over TCP (no CoordinatorURL in Options). It
// touches only own, which New set and nothing replaces.
func (r *Relays) SetCoordinator(url string, hc *http.Client) {
	if r.own != nil {
		r.own.set(url, hc)
	}
}

// SetRefresh spaces the UDP binding's refreshes d apart, within
// [wire.RelayRefresh, wire.MaxRelayRefresh]: the refresh is also the
// keepalive of the NAT mapping towards the relay, so it follows the
// mapping lifetime this node measured. It never blocks.
func (r *Relays) SetRefresh(d time.Duration) {
	r.refresh.Store(int64(min(max(d, wire.RelayRefresh), wire.MaxRelayRefresh)))
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// SetCoordinatorRTT tells the relays how long a TCP connect to the
// coordinator took: one round trip to the host that serves the UDP relay
// too, which sets how long a hello to the UDP relay may go unanswered
// (timing.go). It never blocks.
func (r *Relays) SetCoordinatorRTT(d time.Duration) {
	r.rtt.Store(int64(d))
}

// SetCandidates gives the relays to choose from: the coordinator's (from
// its welcome) and the relay nodes of the peer map that are online, this
// node included when it serves as one. It only records them: Run chooses
// and resolves.
func (r *Relays) SetCandidates(coordinator Candidate, nodes []Candidate) {
	nodes = slices.Clone(nodes)
	r.mu.Lock()
	r.coord, r.nodes = coordinator, nodes
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default: // Run has a kick pending; it will read the latest candidates
	}
}

// HandleControl takes a relay control frame from the shared socket
// (bind.Handlers.RelayControl). It never blocks: it runs on wireguard-go's
// receive goroutine, so frames Run hasn't room for are dropped.
func (r *Relays) HandleControl(pkt []byte, from netip.AddrPort) {
	from = unmapPort(from)
	s, w := r.server.Load(), r.witnessPub.Load()
	if (s == nil || *s != from) && (w == nil || *w != from) {
		return
	}
	select {
	case r.control <- controlFrame{pkt: bytes.Clone(pkt), from: from}:
	default:
		r.Stats.ControlDropped.Add(1)
	}
}

// Status reports the chosen relay and which relays are up.
func (r *Relays) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run keeps the relays until ctx ends; call it once. On return the TCP
// relay is closed and OnRoute is no longer called.
func (r *Relays) Run(ctx context.Context) {
	r.udp.downSince = time.Now()
	defer r.streams.Wait()
	defer r.stopStream()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		r.resolveDue(ctx)
		r.resolveWitness(ctx)
		now := time.Now()
		if d := time.Duration(r.refresh.Swap(0)); d > 0 {
			r.udp.timing.Refresh, r.udp.timing.Expiry = d, 3*d
		}
		r.udp.tick(now)
		r.checkDue(now)
		r.publishServer()
		r.decideStream(ctx, now)
		r.publish()
		if next := r.wake(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			r.reselect(time.Now())
		case c := <-r.control:
			if c.from == r.witness && c.from != r.udp.server {
				r.onWitness(c.pkt, time.Now())
			} else {
				r.udp.handle(c.pkt, c.from, time.Now())
			}
		case t := <-r.echoes:
			r.onEcho(t, time.Now())
		case m := <-r.misses:
			r.onPeerMiss(m)
		case ev := <-r.events:
			r.onStream(ev)
		case <-timer.C:
		}
	}
}

// reselect applies the candidates. A new choice drops the old relay at
// once: the other nodes are moving to the new one.
func (r *Relays) reselect(now time.Time) {
	r.mu.Lock()
	coord := r.coord
	c := choose(coord, r.nodes)
	r.mu.Unlock()
	if coord != r.coordCand {
		r.coordCand, r.witness, r.nextWitness = coord, netip.AddrPort{}, time.Time{}
		r.witnessPub.Store(nil)
		r.retargetStream()
	}
	if c == r.chosen {
		return
	}
	r.health = health{}
	if c == (Candidate{}) {
		r.log.Info("no UDP relay")
	} else {
		r.log.Info("relay chosen", "relay", c.Addr, "key", c.Key.Short())
	}
	r.chosen, r.resolved, r.nextResolve = c, false, time.Time{}
	r.setServers(nil, crypto.PublicKey{}, now)
}

// resolveDue resolves the chosen relay's address when that is due. It may
// wait for DNS (bounded by resolveTimeout), in Run's goroutine only.
func (r *Relays) resolveDue(ctx context.Context) {
	if r.resolved || r.chosen == (Candidate{}) || time.Now().Before(r.nextResolve) {
		return
	}
	addrs, err := resolve(ctx, r.chosen)
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("relay address does not resolve; retrying", "err", err, "in", r.timing.Refresh)
		}
		r.nextResolve = now.Add(r.timing.Refresh)
		return
	}
	r.resolved = true
	r.setServers(addrs, r.chosen.Key, now)
}

// setServers points the UDP binding at the relay's addresses and
// publishes the one in use for HandleControl.
func (r *Relays) setServers(addrs []netip.AddrPort, key crypto.PublicKey, now time.Time) {
	r.udp.setServers(addrs, key, now)
	r.publishServer()
}

// publishServer tells HandleControl which address the relay answers from:
// the binding may move on to another.
func (r *Relays) publishServer() {
	if s := r.server.Load(); s == nil || *s != r.udp.server {
		a := r.udp.server
		r.server.Store(&a)
	}
}

// decideStream opens the TCP relay once the UDP relay is silent (timing.go:
// a hello unanswered for twice the round trip to the coordinator), and
// closes it once the UDP relay is bound: it is only a fallback, and UDP
// keeps being tried meanwhile.
func (r *Relays) decideStream(ctx context.Context, now time.Time) {
	if r.stream == nil {
		return
	}
	want := r.udp.silent(now, r.timing.waitForHello(time.Duration(r.rtt.Load())))
	switch {
	case want && r.streamStop == nil:
		r.log.Info("UDP relay unavailable; opening the TCP relay", "relay", r.udp.server, "unbound_for", now.Sub(r.udp.downSince).Round(time.Millisecond))
		r.Stats.TCPFallbacks.Add(1)
		sctx, stop := context.WithCancel(ctx)
		r.streamGen++
		gen := r.streamGen
		r.streamStop = stop
		sc := r.stream
		r.streams.Go(func() {
			sc.run(sctx, func(s bind.FrameSender) {
				select {
				case r.events <- streamEvent{gen: gen, sender: s}:
				case <-sctx.Done(): // no longer wanted: Run has dropped the route
				}
			})
		})
	case !want && r.streamStop != nil:
		r.log.Info("UDP relay bound; closing the TCP relay")
		r.stopStream()
	}
}

// retargetStream points the TCP relay at the coordinator candidate's
// (coordCand), which another coordinator's relay may be: a TCP relay
// elsewhere than where the node's peers bind carries nothing. An open
// session to the old one ends; decideStream opens the new one when the
// fallback is still wanted.
func (r *Relays) retargetStream() {
	if r.own == nil {
		return
	}
	next := r.own
	c := r.coordCand
	if c.URL != "" && r.opts.HTTPClientFor != nil && (c.URL != r.own.base() || c.Key != r.own.coordKey) {
		o := r.opts
		o.CoordinatorURL, o.HTTPClient, o.CoordinatorKey = c.URL, r.opts.HTTPClientFor(c.Pin), c.Key
		next = newStreamClient(o, &r.Stats)
	}
	if next.base() == r.stream.base() && next.coordKey == r.stream.coordKey {
		return
	}
	from, _ := r.stream.target()
	to, _ := next.target()
	r.log.Info("TCP relay moves with the mesh's relay", "from", from, "to", to)
	r.stream = next
	r.stopStream()
}

// stopStream ends the wanted period: the session closes on its own
// goroutine.
func (r *Relays) stopStream() {
	if r.streamStop != nil {
		r.streamStop()
		r.streamStop, r.tcpRoute = nil, nil
	}
}

// onStream records a session of the current wanted period.
func (r *Relays) onStream(ev streamEvent) {
	if ev.gen != r.streamGen || r.streamStop == nil {
		return
	}
	r.tcpRoute = nil
	if ev.sender != nil {
		via, _ := r.stream.target()
		r.tcpRoute = r.socks.Stream(ev.sender, bind.RouteInfo{Kind: bind.KindRelay, Via: via})
	}
}

// wake is when Run has timed work next; zero when it has none.
func (r *Relays) wake() time.Time {
	next := r.udp.wake()
	if !r.resolved && r.chosen != (Candidate{}) {
		next = earliest(next, r.nextResolve)
	}
	if r.stream != nil && r.streamStop == nil && r.udp.route == nil {
		next = earliest(next, r.udp.silentAt(r.timing.waitForHello(time.Duration(r.rtt.Load()))))
	}
	if r.watching() {
		next = earliest(next, r.health.next)
		if !r.witness.IsValid() && r.coordCand.Addr != "" {
			next = earliest(next, r.nextWitness)
		}
	}
	return next
}

// publish records the status and tells the node when the best route
// changed: the UDP relay while bound, else the TCP relay.
func (r *Relays) publish() {
	best := r.udp.route
	if best == nil {
		best = r.tcpRoute
	}
	st := Status{Relay: r.chosen, Coordinator: r.chosen != (Candidate{}) && r.chosen == r.coordCand, UDPBound: r.udp.route != nil, TCPUp: r.tcpRoute != nil, Carried: r.health.carried}
	if r.resolved {
		st.Addr = r.udp.server
	}
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
	if best != r.best {
		r.best = best
		r.onRoute(best)
	}
	var checked netip.AddrPort
	if r.watching() && r.udp.route != nil {
		checked = r.udp.server
	}
	if checked != r.checked {
		r.checked = checked
		r.onCheck(checked)
	}
}
