package path

import (
	"context"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// Run drives every peer's timers until ctx is done: punch rounds, their
// backoff, heartbeats and dead-path detection.
func (m *Manager) Run(ctx context.Context) {
	tk := time.NewTicker(m.t.Tick)
	defer tk.Stop()
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case from := <-m.strays:
			m.onStray(from, time.Now())
		case now := <-tk.C:
			m.tick(now)
			if ttl := m.addrTTL(); ttl > 0 && now.Sub(pruned) >= ttl/4 {
				pruned = now
				m.pruneAddrs(now)
			}
		}
	}
}

// tick advances all peers once. It decides under the lock and acts after:
// packets go out, auxiliary sockets open and events are posted with mu
// released.
func (m *Manager) tick(now time.Time) {
	var out []outPkt
	var events []Event
	var opens []crypto.PublicKey
	var mtus []mtuUpdate
	var views []hostView
	// Asked before locking: the Bind's locks and mu never nest.
	canPrime := m.socks.CanSendTTL()
	m.mu.Lock()
	m.noteNoPrime(canPrime)
	via := m.checkedRelay()
	for _, p := range m.peers {
		events = m.expirePings(p, now, via, events)
		if p.hasBest {
			var dead bool
			out, dead = m.heartbeat(p, now, out)
			if dead {
				events = append(events, Event{Kind: EventPathLost, Peer: p.key})
				m.startRound(p, now)
				p.wantRendezvous = true
			}
		}
		var open bool
		out, events, open = m.advanceRound(p, now, canPrime, out, events)
		if open {
			opens = append(opens, p.key)
		}
		out = m.advanceBirthday(p, now, canPrime, out)
		out, mtus = m.advanceMTU(p, now, out, mtus)
		views = m.wantHostView(p, views)
		if p.wantRendezvous && p.online && now.Sub(p.lastRendezvous) >= m.t.RendezvousGap {
			p.wantRendezvous = false
			p.lastRendezvous = now
			events = append(events, Event{Kind: EventRendezvous, Peer: p.key})
		}
	}
	relayed := m.relayCheckDue(now, via)
	sink, kernel := m.mtuSink, m.kernelMTU
	m.unlock()
	m.send(out)
	m.sendRelayedPkts(relayed)
	m.readHostViews(kernel, views)
	applyMTUs(sink, mtus)
	for _, e := range events {
		if !m.post(e) && e.Kind == EventPunchTCP {
			// Nobody will answer this attempt: allow a later one.
			m.SetTCPRoute(e.Peer, nil)
		}
	}
	for _, k := range opens {
		m.openBirthdaySockets(k, now)
	}
}

// expirePings forgets pings that went unanswered too long; a relay check
// among them counts against the relay under check, at via.
func (m *Manager) expirePings(p *peer, now time.Time, via netip.AddrPort, events []Event) []Event {
	for tx, pg := range p.pending {
		if now.Sub(pg.sent) > m.t.PingTimeout {
			delete(p.pending, tx)
			if pg.check {
				events = m.relayMiss(p, pg, via, events)
			}
		}
	}
	return events
}

// heartbeat keeps the direct path open and checks that it answers. Both
// sides send, so both NATs' mappings stay fresh (one side's keepalive does
// not hold the other's mapping). It reports a path that missed
// Timing.MissedPongs heartbeats in a row as dead.
func (m *Manager) heartbeat(p *peer, now time.Time, out []outPkt) ([]outPkt, bool) {
	interval := m.idleKeepalive()
	active := p.active(now, m.t)
	if active {
		interval = m.t.ActiveHeartbeat
	}
	if now.Sub(p.lastHeartbeat) < interval {
		return out, false
	}
	if p.probes >= m.t.MissedPongs {
		m.Stats.PathsLost.Add(1)
		m.log.Warn("direct path stopped answering; punching again", "peer", p.name, "endpoint", p.best, "missed", p.probes, "last_pong", now.Sub(p.lastPong).Round(time.Millisecond))
		p.dropBest()
		m.closeAux(p, 0)
		if !active {
			m.idleLost(interval)
		}
		return out, true
	}
	if !active && m.peerKeeps(p, now, interval) {
		// The peer keeps this path: its ping and our pong refreshed both
		// NATs.
		p.lastHeartbeat = now
		return out, false
	}
	p.lastHeartbeat = now
	p.probes++
	return m.appendPingVia(p, p.best, p.bestSock, now, out), false
}

// advanceRound pings every candidate while a round lasts, ends it once a
// path has settled, and schedules the next round with backoff when none
// answered. A peer that is offline is not punched.
//
// It reports whether the birthday technique needs its sockets opened.
// canPrime says whether low-TTL primes can be sent (order.go).
func (m *Manager) advanceRound(p *peer, now time.Time, canPrime bool, out []outPkt, events []Event) ([]outPkt, []Event, bool) {
	open := false
	switch {
	case p.punching(now):
		if p.hasBest && !p.settleAt.IsZero() && !now.Before(p.settleAt) {
			p.punchUntil = time.Time{}
			return out, events, false
		}
		if now.Sub(p.lastPunchPing) >= m.t.PunchInterval {
			p.lastPunchPing = now
			out = m.punchTick(p, now, canPrime, out)
		}
	case !p.punchUntil.IsZero():
		// The round just ended.
		p.punchUntil = time.Time{}
		if !p.hasBest {
			p.failures++
			m.Stats.RoundsFailed.Add(1)
			m.afterFailure(p, now)
			open = m.startBirthday(p, now)
			if remote, ok := m.wantTCPPunch(p, now); ok {
				events = append(events, Event{Kind: EventPunchTCP, Peer: p.key, Remote: remote})
			}
			m.log.Debug("punch round failed", "peer", p.name, "candidates", len(p.cands), "failures", p.failures, "next", p.nextRound.Sub(now).Round(time.Second))
		}
	case !p.hasBest && p.online && len(p.cands) > 0 && !now.Before(p.nextRound):
		// Keep retrying direct, with backoff; traffic waiting on the relay
		// or on nothing doesn't shorten the wait below it.
		if p.nextRound.IsZero() && !p.route.want.Load() {
			return out, events, false
		}
		p.route.want.Store(false)
		m.startRound(p, now)
		p.wantRendezvous = true
	}
	return out, events, open
}

// wantTCPPunch decides whether to try TCP after a failed UDP round: the
// peer offers a TCP mapping and no attempt is under way or too recent.
func (m *Manager) wantTCPPunch(p *peer, now time.Time) (netip.AddrPort, bool) {
	if !m.tcpPunch || p.tcpTrying || now.Before(p.nextTCP) || p.route.tcp.Load() != nil || !p.tcpCand.IsValid() {
		return netip.AddrPort{}, false
	}
	p.tcpTrying = true
	return p.tcpCand, true
}
