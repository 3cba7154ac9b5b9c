package path

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Ordered punching. Some routers track the first unsolicited packet that
// reaches a mapped port (Linux masquerade with no WAN input filter:
// conntrack confirms it at the router's own input). The inside host's next
// flow to that packet's source then finds its tuple taken and the NAT gives
// it another port, which the peer never learns: both sides keep sending,
// each packet refreshing the entry that blocks them, and the pair stays on
// the relay (Tailscale issue 20910 is the same trap on a router's own
// sockets). A punch is safe when each side's NAT has sent towards the other
// before the other's first packet arrives there.
//
// Ways to order it were weighed. Cueing both sides at once (the
// coordinator's rendezvous) leaves them racing within the cues' skew,
// which is tens of milliseconds while the packets between them may take
// less; cueing one side first doesn't help, as its first packet is then
// the early one at the other's router. A low-TTL packet orders it on any
// kernel, and needs no clock: sent from the shared
// socket with TTL primeTTL (a per-packet IP_TTL or IPV6_HOPLIMIT control
// message, so WireGuard's packets are untouched), it creates this side's
// mapping when its NAT forwards it and dies at the next router, before any
// peer's NAT. So every round first primes the peer's public mappings,
// tells the peer over the relay (DiscoReady), and holds its own full-TTL
// pings to those mappings until the peer's ready (or a ping straight from
// the peer, whose NAT is then open) says the peer's NAT is primed too.
// LAN, port-mapped and peer-reflexive candidates need no order: no NAT of
// that kind sits before them, or the peer already sent from there.
//
// A round that failed although both sides were ready was likely disturbed
// by a packet that came first anyway (a heartbeat after a NAT lost its
// state, a peer that doesn't prime): its entry lives while packets refresh
// it, so the next round waits out Timing.QuietPeriod, past conntrack's
// unreplied-UDP timeout, and nothing but that retry starts one meanwhile
// (not new candidates, a cue or the peer's ready: each would send to the
// peer and refresh what blocks it). The relay carries the peer meanwhile.
// Where the moved port does get through (a peer without a filter),
// peer-reflexive learning finds it at once; and a NAT that moved a flow
// gives the host's newer flows that port (Linux reuses the newest mapping
// of a source), so the next STUN reports it and the retry punches it.

// primeTTL leaves the sender's NAT (the first router, which forwards it
// with TTL 1) and dies at the next, an ISP's router: a home router is at
// least one router hop from any other. Behind two NATs (a home router
// behind a CGN) it opens the inner one only; the outer one, a carrier's,
// filters what arrives early instead of tracking it.
const primeTTL = 2

// noteNoPrime says once, behind a NAT with peers, that this host can't
// send low-TTL packets: its punches then wait for the peer's pings, or the
// hold timeout, and a router that remaps when punched early may keep them
// on the relay.
func (m *Manager) noteNoPrime(canPrime bool) {
	if canPrime || m.saidNoTTL || len(m.peers) == 0 || m.self.Mapping == "" || m.self.Mapping == wire.MappingNone {
		return
	}
	m.saidNoTTL = true
	m.log.Info("this host's socket can't set a packet's TTL: punches are not primed (routers that remap when punched early may keep a peer on the relay)")
}

// ordered reports whether a candidate of this kind sits behind the peer's
// NAT as a mapping an early packet could move: what STUN saw, and the
// ports predicted past it.
func ordered(kind string) bool {
	return kind == wire.EndpointSTUN || kind == wire.EndpointPredict
}

// readyFresh reports whether the peer said it primed (or pinged us
// directly) recently enough that its NAT still holds that mapping: within a
// round's longest stretch, far inside conntrack's 30 s for an unanswered
// UDP flow.
func (p *peer) readyFresh(now time.Time, t Timing) bool {
	return !p.peerReady.IsZero() && now.Sub(p.peerReady) < t.MaxRound
}

// held reports whether full-TTL pings to the peer's public mappings must
// wait this tick: no path yet, the peer is behind a NAT, it hasn't said it
// primed, and the hold hasn't lasted HoldTimeout (after which the round
// pings anyway: a relay that drops the ready, a peer that can't prime).
// Until this node's own STUN answers, the peer can't know where our pings
// will come from, let alone prime for them: the hold lasts twice as long
// then (a first answer takes a second or two; past that STUN is taken to
// be blocked, and peer-reflexive learning is the way in).
func (m *Manager) held(p *peer, now time.Time) bool {
	switch {
	case p.hasBest, p.nat != nil && p.nat.Mapping == wire.MappingNone, p.readyFresh(now, m.t):
		return false
	}
	limit := m.t.HoldTimeout
	if m.self.Mapping == "" {
		limit *= 2
	}
	return now.Sub(p.holdSince) < limit
}

// mappingsMoved starts the hold afresh when either side's public mappings
// changed (new candidates of the peer's, or our own re-STUN): a ready
// either side sent primed the old ones, so new ones must go, ours at the
// next tick.
func (p *peer) mappingsMoved(now time.Time) {
	p.peerReady, p.lastReady = time.Time{}, time.Time{}
	p.holdSince = now
}

// punchTick is one punch interval's packets to the peer: full pings to
// candidates that need no order; to those that do, primes while held and
// full pings after. Until a path is up it also tells the peer, every
// ReadyInterval, that this side is ready: behind no NAT, or it just primed
// or pinged the peer's public mappings, which are where the peer's pings
// will come from (a round that doesn't know them yet says nothing). A
// ping of ours that arrives releases the peer too, but not all do: behind
// a CGN the prime opens only the home router, and the peer's pings die at
// the CGN until ours have left it, so the peer must not wait for them.
func (m *Manager) punchTick(p *peer, now time.Time, canPrime bool, out []outPkt) []outPkt {
	hold := m.held(p, now)
	var t tickCount
	for a, kind := range p.cands {
		out = m.punchOne(p, a, kind, hold, canPrime, now, &t, out)
	}
	for _, a := range p.predictions() {
		if _, known := p.cands[a]; !known {
			out = m.punchOne(p, a, wire.EndpointPredict, hold, canPrime, now, &t, out)
		}
	}
	if t.pinged > 0 && p.readyFresh(now, m.t) {
		p.orderedRound = true
	}
	ready := m.self.Mapping == wire.MappingNone || t.primed > 0 || t.pinged > 0
	if !p.hasBest && ready && now.Sub(p.lastReady) >= m.t.ReadyInterval && m.allow(p, now) {
		out = m.appendReady(p, now, out)
	}
	return out
}

// tickCount is what one punch tick sent to candidates that need order:
// primes, and full pings.
type tickCount struct{ primed, pinged int }

// punchOne sends this tick's packet to one candidate.
func (m *Manager) punchOne(p *peer, a netip.AddrPort, kind string, hold, canPrime bool, now time.Time, t *tickCount, out []outPkt) []outPkt {
	if !ordered(kind) {
		if m.allow(p, now) {
			out = m.appendPing(p, a, now, out)
		}
		return out
	}
	switch {
	case !hold:
		if m.allow(p, now) {
			out = m.appendPing(p, a, now, out)
			t.pinged++
		}
	case canPrime && m.self.Mapping != wire.MappingNone && m.allow(p, now):
		out = m.appendPrime(p, a, now, out)
		t.primed++
	}
	return out
}

// appendPrime is a ping with TTL primeTTL: it opens this side's NAT and
// dies before the peer's. It is a real ping, so a peer it does reach (one
// hop away) answers it.
func (m *Manager) appendPrime(p *peer, to netip.AddrPort, now time.Time, out []outPkt) []outPkt {
	n := len(out)
	out = m.appendPingVia(p, to, 0, now, out)
	if len(out) > n {
		out[n].ttl, out[n].peer = primeTTL, p.key
		m.Stats.PrimesSent.Add(1)
	}
	return out
}

// appendReady tells the peer over the relay that this side's NAT is open
// towards it; the peer then pings without waiting.
func (m *Manager) appendReady(p *peer, now time.Time, out []outPkt) []outPkt {
	pkt, err := m.seal(p.key, wire.Disco{Type: wire.DiscoReady})
	if err != nil {
		m.log.Warn("seal ready", "peer", p.name, "err", err)
		return out
	}
	p.lastReady, p.readyWaits = now, false
	m.Stats.ReadySent.Add(1)
	return append(out, outPkt{pkt: pkt, ready: true, peer: p.key})
}

// readyUnsent lets the next tick try again when a ready was not sent; one
// that found no relay to go by (noRelay: the node's first round often
// starts before its relay is bound) goes the moment one is (SetRelay).
func (m *Manager) readyUnsent(key crypto.PublicKey, noRelay bool) {
	m.mu.Lock()
	if p, ok := m.peers[key]; ok {
		p.lastReady = time.Time{}
		p.readyWaits = noRelay
	}
	m.mu.Unlock()
}

// relayBound lets peers hear from this node through the relay as soon as
// one is bound: the readies that found no relay (the peer holds its pings
// until it hears from us), and relayed pings to the relayed peers
// (relayPings, bounded as a relay check is). A peer holds a handshake it
// sent before this node was reachable until a packet from us arrives
// (bind.Bind.ResendHandshake); behind a network that blocks UDP, or facing
// a peer with no NAT, no ready is ever due and no direct packet arrives,
// and the handshake waited out WireGuard's 5 s REKEY_TIMEOUT.
func (m *Manager) relayBound() {
	now := time.Now()
	var out []outPkt
	m.mu.Lock()
	for _, p := range m.peers {
		if p.readyWaits && p.online && !p.hasBest && p.punching(now) && m.allow(p, now) {
			out = m.appendReady(p, now, out)
		}
		p.readyWaits = false
	}
	pings := m.relayPings(now, m.checkedRelay())
	m.unlock()
	m.send(out)
	m.sendRelayedPkts(pings)
}

// onReady takes the peer's word that its NAT is primed towards us. Outside
// a round it starts one (the peer holds its pings for our ready), at most
// one a CallMeMaybeGap, as for call-me-maybe.
func (m *Manager) onReady(p *peer, now time.Time) {
	m.Stats.ReadyReceived.Add(1)
	p.peerReady = now
	if p.punching(now) || !p.online {
		return
	}
	if !p.lastCallMeMaybe.IsZero() && now.Sub(p.lastCallMeMaybe) < m.t.CallMeMaybeGap {
		m.Stats.CallMeMaybeDropped.Add(1)
		return
	}
	p.lastCallMeMaybe = now
	m.startRound(p, now)
}

// afterFailure schedules the next round after a failed one: the backoff,
// and after an ordered round that failed, the quiet period that lets a
// disturbing entry expire (doubled from the second such failure in a row,
// past the 60 s some routers use), in which nothing else starts a round.
func (m *Manager) afterFailure(p *peer, now time.Time) {
	p.nextRound = now.Add(backoff(p.failures, m.t))
	if !p.orderedRound {
		return
	}
	p.orderedFails++
	p.quietUntil = now.Add(m.t.QuietPeriod << min(p.orderedFails-1, 1))
	if p.quietUntil.After(p.nextRound) {
		p.nextRound = p.quietUntil
	}
	// Once per streak at info: a pair that can't punch at all (symmetric
	// NATs at both ends) fails every round in order too.
	level := slog.LevelInfo
	if p.orderedFails > 1 {
		level = slog.LevelDebug
	}
	m.log.Log(context.Background(), level, "ordered punch failed: a packet that arrived early may hold a NAT's port; quiet before the next round",
		"peer", p.name, "failed", p.orderedFails, "next", p.nextRound.Sub(now).Round(time.Second))
}
