package path

import (
	"net/netip"
	"slices"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// A relay node can tell a node's echo (a frame to itself) from its traffic
// to peers, and pass the one while dropping the other. So the manager also
// checks the relay with the peers it carries: every Timing.RelayCheck it
// pings a few relayed peers through the relay under check (CheckRelay).
// A peer's pong proves the relay carries that pair; wire.RelayCheckMisses
// unanswered pings in a row are evidence against it
// (EventRelayUnanswered), which the relay client weighs and the
// coordinator acts on only when the peer says the same: a dead peer's
// silence alone never moves the mesh.

// relayCheckPeers bounds the peers pinged through the relay per check:
// peers with traffic first, then the rest in turn. A mesh of many relayed
// peers is covered over several checks, never by a burst.
const relayCheckPeers = 4

// relayedPkt is a discovery packet to send through the relay once the lock
// is released.
type relayedPkt struct {
	peer crypto.PublicKey
	pkt  []byte
}

// CheckRelay sets the UDP relay whose carrying the manager checks with
// relayed pings (the relay client's relay node); invalid: none (the
// coordinator's relay is the fallback, nothing to check it for).
func (m *Manager) CheckRelay(addr netip.AddrPort) {
	m.mu.Lock()
	m.relayCheck = unmap(addr)
	m.mu.Unlock()
}

// checkedRelay is the relay route's address while it is the one under
// check; invalid otherwise. Caller holds mu.
func (m *Manager) checkedRelay() netip.AddrPort {
	r := m.relay.Load()
	if r == nil || !m.relayCheck.IsValid() {
		return netip.AddrPort{}
	}
	if i := r.Info(); i.Kind == bind.KindRelay && i.Addr == m.relayCheck {
		return i.Addr
	}
	return netip.AddrPort{}
}

// relayCheckDue pings the relayed peers due for a check through the relay
// at via. Caller holds mu; the packets go out after it is released.
func (m *Manager) relayCheckDue(now time.Time, via netip.AddrPort) []relayedPkt {
	if !via.IsValid() || now.Before(m.nextRelayCheck) {
		return nil
	}
	return m.relayPings(now, via)
}

// relayPings pings up to relayCheckPeers relayed peers through the relay,
// those with traffic first, then the one checked longest ago; through the
// relay under check (via valid) they are that relay's check, and the next
// one is a Timing.RelayCheck away. A peer's pong shows the pair carried;
// the ping itself tells a peer that holds a handshake for this node that
// it is reachable now (the peer answers with the handshake). Caller holds
// mu; the packets go out after it is released.
func (m *Manager) relayPings(now time.Time, via netip.AddrPort) []relayedPkt {
	if via.IsValid() {
		m.nextRelayCheck = now.Add(m.t.RelayCheck)
	}
	var due []*peer
	for _, p := range m.peers {
		if !p.online || p.hasBest || p.route.tcp.Load() != nil {
			p.relayMisses = 0 // not carried by the relay: no streak
			continue
		}
		due = append(due, p)
	}
	slices.SortFunc(due, func(a, b *peer) int {
		if aa, ba := a.active(now, m.t), b.active(now, m.t); aa != ba {
			if aa {
				return -1
			}
			return 1
		}
		return a.lastRelayCheck.Compare(b.lastRelayCheck)
	})
	var out []relayedPkt
	for _, p := range due[:min(len(due), relayCheckPeers)] {
		pkt, tx, err := m.newPing(p, via, now, nil, 0)
		if err != nil {
			m.log.Warn("seal ping", "peer", p.name, "err", err)
			continue
		}
		pg := p.pending[tx]
		pg.relayed, pg.check = true, via.IsValid()
		p.lastRelayCheck = now
		out = append(out, relayedPkt{p.key, pkt})
	}
	return out
}

// relayMiss counts a relay check ping that expired unanswered; a streak of
// wire.RelayCheckMisses through the relay still under check is evidence.
// Caller holds mu.
func (m *Manager) relayMiss(p *peer, pg *ping, via netip.AddrPort, events []Event) []Event {
	if pg.to != via || !p.online {
		p.relayMisses = 0 // another relay now, or the peer left: the streak is over
		return events
	}
	if p.relayMisses == 0 {
		p.relayMissSince = pg.sent
	}
	p.relayMisses++
	if p.relayMisses < wire.RelayCheckMisses {
		return events
	}
	p.relayMisses = 0
	m.log.Info("relayed pings to an online peer went unanswered", "peer", p.name, "relay", via, "misses", wire.RelayCheckMisses)
	return append(events, Event{Kind: EventRelayUnanswered, Peer: p.key, Remote: via, Since: p.relayMissSince})
}

// sendRelayedPkts sends relay check pings; the relay route is read again,
// without the lock.
func (m *Manager) sendRelayedPkts(out []relayedPkt) {
	for _, o := range out {
		if err := m.sendRelayed(o.peer, o.pkt); err != nil {
			m.log.Debug("relay check not sent", "peer", o.peer.Short(), "err", err)
		}
	}
}
