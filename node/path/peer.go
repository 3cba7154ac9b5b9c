package path

import (
	"net/netip"
	"slices"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/pmtu"
	"golang.org/x/time/rate"
)

// peer is the manager's slow-path state for one peer, guarded by Manager.mu.
type peer struct {
	key    crypto.PublicKey
	name   string
	online bool
	route  *route

	// cands maps each candidate address to its kind.
	cands map[netip.AddrPort]string
	// prflx lists peer-reflexive candidates oldest first, for eviction.
	prflx []netip.AddrPort
	// nat is the peer's own view of its NAT.
	nat *wire.NATInfo
	// vouched are the addresses of the candidates the coordinator gave,
	// which it only passes on with evidence (wire.Vouches): a
	// call-me-maybe's addresses must stand on them.
	vouched []netip.Addr
	// given is the candidate list cands was last made from, before the
	// scope's filter: a link change re-applies it (a host that gains
	// IPv6 may now probe the peer's IPv6 addresses).
	given []wire.Endpoint

	// The direct path in use, when hasBest.
	hasBest  bool
	best     netip.AddrPort
	bestKind string
	bestRTT  time.Duration
	lastPong time.Time
	// probes counts heartbeats sent to best since its last pong.
	probes        int
	lastHeartbeat time.Time
	// lastPingSrc is where the peer's last ping came from: its current
	// mapping towards us.
	lastPingSrc netip.AddrPort
	lastPingAt  time.Time
	// lastPingBack is when a ping from the peer was last answered with a
	// ping of ours at once (disco.go onPing).
	lastPingBack time.Time

	pending map[[wire.TxIDLen]byte]*ping

	// sockFor maps a candidate to the auxiliary socket that reaches it.
	sockFor  map[netip.AddrPort]int
	bestSock int
	bday     birthday

	// TCP hole punching, after UDP failed. The TCP candidate is kept apart
	// from cands: a public host's TCP and UDP candidates share ip:port.
	tcpCand   netip.AddrPort
	tcpTrying bool
	nextTCP   time.Time

	// Punch rounds, and the packets they may send.
	limit          *rate.Limiter
	roundStart     time.Time
	punchUntil     time.Time
	lastPunchPing  time.Time
	settleAt       time.Time
	nextRound      time.Time
	failures       int
	wantRendezvous bool
	lastRendezvous time.Time
	// lastCallMeMaybe rate-limits the peer's call-me-maybe and ready
	// messages.
	lastCallMeMaybe time.Time
	// lastOffline rate-limits the checks the peer's offline notices ask
	// for (offline.go).
	lastOffline time.Time

	// Relay checks (relaycheck.go): unanswered relayed pings in a row, the
	// first one's send time, and the peer's last check.
	relayMisses    int
	relayMissSince time.Time
	lastRelayCheck time.Time
	// mtu searches the direct path's MTU (nil: discovery off); mtuShown
	// is the result last handed to the MTUSink.
	mtu      *pmtu.Search
	mtuShown int
	// Ordered punching (order.go). peerReady is when the peer last said
	// its NAT is primed towards us, or pinged us directly; lastReady when
	// we last said so. orderedRound: this round pinged the peer's public
	// mappings after its ready; orderedFails counts such rounds failed in
	// a row, and quietUntil ends the quiet period after the last.
	peerReady time.Time
	lastReady time.Time
	// readyWaits: the last ready found no relay to go by.
	readyWaits   bool
	orderedRound bool
	orderedFails int
	quietUntil   time.Time
	// holdSince is when the current hold began: the round's start, or
	// the last time either side's mappings moved.
	holdSince time.Time
}

// ping is an outstanding discovery ping.
type ping struct {
	to      netip.AddrPort
	sock    int
	sent    time.Time
	relayed bool
	check   bool              // a relay check (relaycheck.go)
	reply   chan<- PingResult // set for user pings
	// probe is the size a path MTU probe tests (0: an ordinary ping), in
	// the search's round.
	probe int
	round uint32
}

func newPeer(key crypto.PublicKey, t Timing) *peer {
	return &peer{
		key:     key,
		limit:   newPeerLimiter(t),
		route:   new(route),
		cands:   make(map[netip.AddrPort]string),
		pending: make(map[[wire.TxIDLen]byte]*ping),
		sockFor: make(map[netip.AddrPort]int),
	}
}

// setVouched records the coordinator-given candidates' addresses.
func (p *peer) setVouched(eps []wire.Endpoint) {
	p.vouched = p.vouched[:0]
	for _, e := range eps {
		p.vouched = append(p.vouched, e.Addr.Addr().Unmap())
	}
}

// vouchedFor reports whether the coordinator vouched for ip.
func (p *peer) vouchedFor(ip netip.Addr) bool {
	return slices.ContainsFunc(p.vouched, func(v netip.Addr) bool { return wire.Vouches(v, ip) })
}

// setCandidates replaces the coordinator-given candidates, keeping the
// peer-reflexive ones, and reports whether any address is new. Only
// addresses permit allows are kept, at most maxCandidates of them.
func (p *peer) setCandidates(eps []wire.Endpoint, permit func(netip.AddrPort, string) bool) bool {
	p.given = slices.Clone(eps)
	next := make(map[netip.AddrPort]string, len(eps)+len(p.prflx))
	changed := false
	var udp []wire.Endpoint
	for _, e := range eps {
		a := unmap(e.Addr)
		switch {
		case !permit(a, e.Kind):
		case e.Kind == wire.EndpointTCP:
			p.tcpCand = a
		default:
			udp = append(udp, wire.Endpoint{Addr: a, Kind: e.Kind})
		}
	}
	for _, e := range bestCandidates(udp, maxCandidates) {
		a := e.Addr
		if _, ok := p.cands[a]; !ok {
			changed = true
		}
		next[a] = e.Kind
	}
	for _, a := range p.prflx {
		if _, ok := next[a]; !ok {
			next[a] = KindPeerReflexive
		}
	}
	p.cands = next
	return changed
}

// predictCount is how many ports past a sequential NAT's last mapping are
// probed: the peer's NAT hands out its next ports to its pings towards us,
// unless other hosts behind it took them in between.
const predictCount = 8

// predictions are the ports a sequential, endpoint-dependent NAT is likely
// to give the peer's mapping towards us: just after the mapping its STUN
// query got (nat-traversal notes: "the next port can be predicted").
func (p *peer) predictions() []netip.AddrPort {
	if p.nat == nil || !p.nat.Predictable() {
		return nil
	}
	var stun []netip.AddrPort
	for a, kind := range p.cands {
		if kind == wire.EndpointSTUN {
			stun = append(stun, a)
		}
	}
	slices.SortFunc(stun, func(x, y netip.AddrPort) int { return x.Compare(y) })
	var out []netip.AddrPort
	for _, a := range stun[:min(len(stun), maxPredicted)] {
		for i := 1; i <= predictCount; i++ {
			port := int(a.Port()) + i*p.nat.PortStep
			if port > 65535 {
				break
			}
			out = append(out, netip.AddrPortFrom(a.Addr(), uint16(port)))
		}
	}
	return out
}

// addPeerReflexive records a ping's new source as a candidate.
func (p *peer) addPeerReflexive(a netip.AddrPort) bool {
	if _, ok := p.cands[a]; ok {
		return false
	}
	if len(p.prflx) == maxPeerReflexive {
		delete(p.cands, p.prflx[0])
		p.prflx = p.prflx[1:]
	}
	p.prflx = append(p.prflx, a)
	p.cands[a] = KindPeerReflexive
	return true
}

// startRound begins (or extends) a punch round. A round is extended by new
// candidates or cues, but never past Timing.MaxRound from its start: a peer
// can't keep us punching by feeding us news. In a quiet period nothing but
// the retry timer starts one (order.go). It reports whether a new round
// began.
func (p *peer) startRound(now time.Time, t Timing) bool {
	if p.quiet(now) {
		return false
	}
	if now.Before(p.punchUntil) {
		p.punchUntil = minTime(now.Add(t.PunchDuration), p.roundStart.Add(t.MaxRound))
		return false
	}
	p.roundStart = now
	p.punchUntil = now.Add(t.PunchDuration)
	p.lastPunchPing = time.Time{}
	p.settleAt = time.Time{}
	p.lastReady = time.Time{}
	p.orderedRound = false
	p.holdSince = now
	return true
}

// startRound starts or extends p's punch round, counting the new ones.
func (m *Manager) startRound(p *peer, now time.Time) {
	if p.startRound(now, m.t) {
		m.Stats.RoundsStarted.Add(1)
	}
}

func (p *peer) punching(now time.Time) bool { return now.Before(p.punchUntil) }

// quiet reports whether the peer waits out a quiet period after an
// ordered round failed (order.go).
func (p *peer) quiet(now time.Time) bool {
	return !p.hasBest && now.Before(p.quietUntil)
}

// active reports whether traffic went to the peer recently.
func (p *peer) active(now time.Time, t Timing) bool {
	return now.Sub(time.Unix(0, p.route.lastTx.Load())) < t.ActiveWindow
}

// setBest switches the direct path to r, from socket sock.
func (p *peer) setBest(r bind.Route, sock int, kind string, rtt time.Duration, now time.Time) {
	p.hasBest, p.best, p.bestSock, p.bestKind, p.bestRTT = true, r.Info().Addr, sock, kind, rtt
	p.lastPong, p.probes = now, 0
	p.route.direct.Store(r)
	p.failures, p.orderedFails, p.quietUntil = 0, 0, time.Time{}
	p.startMTU()
}

// dropBest forgets a dead direct path.
func (p *peer) dropBest() {
	p.hasBest = false
	p.route.direct.Store(nil)
	p.stopMTU()
}

// prefer decides whether a path that just answered replaces the current one.
// LAN beats everything else (peers behind one NAT, which may not hairpin);
// the peer's current source towards us beats a stale mapping of the same
// address family; otherwise, and between IPv4 and IPv6, a new path must be
// betterRTTRatio faster, so similar paths don't flap and the faster family
// wins.
func (p *peer) prefer(a netip.AddrPort, kind string, rtt time.Duration) bool {
	switch {
	case !p.hasBest:
		return true
	case a == p.best:
		return false
	case p.bestKind == wire.EndpointLAN:
		return kind == wire.EndpointLAN && float64(rtt) < betterRTTRatio*float64(p.bestRTT)
	case kind == wire.EndpointLAN:
		return true
	case p.probes > 0:
		return true // the current path is in doubt and this one answers
	case a == p.lastPingSrc && p.best != p.lastPingSrc && a.Addr().Is4() == p.best.Addr().Is4():
		// The peer's mapping towards us moved here. A dual-stack peer
		// pings from both families while punching: that is no move.
		return true
	}
	return float64(rtt) < betterRTTRatio*float64(p.bestRTT)
}

// backoff is the wait before the next round after failures in a row.
func backoff(failures int, t Timing) time.Duration {
	d := t.RetryMin
	for i := 1; i < failures && d < t.RetryMax; i++ {
		d *= 2
	}
	return min(d, t.RetryMax)
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
