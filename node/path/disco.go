package path

import (
	"crypto/rand"
	"errors"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// outPkt is a packet to send once the lock is released: to an address from
// socket sock, with TTL ttl when set (a prime for peer), or a ready to peer
// the way its relayed packets go.
type outPkt struct {
	pkt   []byte
	to    netip.AddrPort
	sock  int
	ttl   int
	ready bool
	peer  crypto.PublicKey
}

// seal frames a discovery message for peer.
func (m *Manager) seal(to crypto.PublicKey, d wire.Disco) ([]byte, error) {
	magic := wire.DiscoMagic[:]
	return m.sealer.Seal(append([]byte{}, magic...), magic, to, d.Marshal())
}

// HandleDisco handles a discovery packet that arrived at the shared socket.
// Forged, replayed and malformed packets, and packets from keys that are not
// peers, are dropped and counted.
func (m *Manager) HandleDisco(pkt []byte, from netip.AddrPort, sock int) {
	m.handle(pkt, unmap(from), sock, nil)
}

// HandleRelayedDisco handles a discovery packet that a relay forwarded from
// peer. The sealed sender must be that peer.
func (m *Manager) HandleRelayedDisco(pkt []byte, peer crypto.PublicKey) {
	m.handle(pkt, netip.AddrPort{}, 0, &peer)
}

func (m *Manager) handle(pkt []byte, from netip.AddrPort, sock int, relayedFrom *crypto.PublicKey) {
	magic := wire.DiscoMagic[:]
	if len(pkt) < len(magic) {
		m.Stats.Rejected.Add(1)
		return
	}
	key, plain, err := m.sealer.Open(magic, pkt[len(magic):])
	if err != nil || (relayedFrom != nil && *relayedFrom != key) {
		m.Stats.Rejected.Add(1)
		m.log.Debug("discovery packet rejected", "from", from, "err", err)
		return
	}
	d, err := wire.ParseDisco(plain)
	if err != nil {
		m.Stats.Rejected.Add(1)
		m.log.Debug("discovery packet malformed", "from", from, "peer", key.Short(), "err", err)
		return
	}
	var (
		out    []outPkt
		doubts bool
	)
	m.mu.Lock()
	p, ok := m.peers[key]
	if !ok {
		// Anyone can make a key pair and seal to us: keep nothing for a
		// key that is not a peer (the sealer's lock is a leaf, and holding
		// mu keeps the key from becoming a peer meanwhile).
		m.sealer.Forget(key)
		m.mu.Unlock()
		m.Stats.Rejected.Add(1)
		m.log.Debug("discovery packet from a key that is not a peer", "from", from, "key", key.Short())
		return
	}
	now := time.Now()
	switch {
	case relayedFrom != nil && d.Type == wire.DiscoPing:
		m.Stats.PingsReceived.Add(1)
		m.mu.Unlock()
		if pong, err := m.seal(key, wire.Disco{Type: wire.DiscoPong, TxID: d.TxID}); err == nil {
			m.sendRelayed(key, pong)
		}
		m.socks.ResendHandshake(key)
		return
	case relayedFrom != nil && d.Type == wire.DiscoPong:
		m.onPong(p, d, from, now)
	case d.Type == wire.DiscoReady:
		m.onReady(p, now)
	case relayedFrom != nil:
		// Call-me-maybe lists addresses, and an offline notice speaks of
		// the coordinator whose relay may be in the way: each is sent
		// directly or not at all.
	case d.Type == wire.DiscoOffline:
		doubts = m.onOffline(p, now)
	case d.Type == wire.DiscoPing:
		out = m.onPing(p, d, len(pkt), from, sock, now, out)
	case d.Type == wire.DiscoPong:
		m.onPong(p, d, from, now)
	case d.Type == wire.DiscoCallMeMaybe:
		// At most one a CallMeMaybeGap: each starts a round.
		if !p.lastCallMeMaybe.IsZero() && now.Sub(p.lastCallMeMaybe) < m.t.CallMeMaybeGap {
			m.Stats.CallMeMaybeDropped.Add(1)
			break
		}
		p.lastCallMeMaybe = now
		// The peer's word alone can't aim our pings: each address must
		// stand on what the coordinator saw of it.
		eps := make([]wire.Endpoint, 0, len(d.Addr))
		for _, a := range d.Addr {
			if !p.vouchedFor(a.Addr()) {
				m.Stats.Unvouched.Add(1)
				continue
			}
			eps = append(eps, wire.Endpoint{Addr: a, Kind: wire.EndpointSTUN})
		}
		if p.setCandidates(append(eps, currentEndpoints(p)...), m.permit) {
			p.mappingsMoved(now)
		}
		m.startRound(p, now)
	}
	m.unlock()
	m.send(out)
	if doubts {
		m.post(Event{Kind: EventCoordinatorDoubted, Peer: key})
	}
	// The peer is up and this packet found its way here: a handshake
	// that waits for it may find its way there now.
	m.socks.ResendHandshake(key)
}

// sendRelayed sends a discovery packet to peer the way its WireGuard
// packets go when there is no direct UDP path: a punched TCP path, else the
// relay in use.
func (m *Manager) sendRelayed(peer crypto.PublicKey, pkt []byte) error {
	r := m.relay.Load()
	if v, ok := m.routes.Load(peer); ok {
		if t := v.(*route).tcp.Load(); t != nil {
			r = t
		}
	}
	if r == nil {
		return ErrNoPath
	}
	return r.Send([][]byte{pkt}, peer)
}

// onPing records the sender's address and answers with a pong that tells it
// where the ping came from, as large as the ping (pingLen bytes): a path
// MTU probe's answer tests the way back too.
func (m *Manager) onPing(p *peer, d wire.Disco, pingLen int, from netip.AddrPort, sock int, now time.Time, out []outPkt) []outPkt {
	m.Stats.PingsReceived.Add(1)
	// The source is not yet where the peer is: a peer (or anyone replaying
	// its packets) can forge a source address. Only the pong to our own
	// ping there confirms it (onPong); a ping only keeps alive what a pong
	// confirmed for this same peer (its heartbeats from a source we don't
	// send to, on an asymmetric path).
	m.refreshAddr(from, p.key, now)
	p.lastPingSrc, p.lastPingAt = from, now
	// The peer's NAT has sent to us: our pings can't arrive there early.
	p.peerReady = now
	if sock != 0 && p.sockFor[from] != sock {
		// The easy side's probe hit one of our birthday sockets: that
		// socket's mapping is the way through our NAT.
		p.sockFor[from] = sock
		m.log.Info("birthday probe hit", "peer", p.name, "from", from, "socket", sock)
		out = m.appendPing(p, from, now, out)
	}
	switch {
	case p.addPeerReflexive(from):
		m.log.Debug("peer-reflexive candidate", "peer", p.name, "addr", from)
		if !p.hasBest || from != p.best {
			out = m.appendPing(p, from, now, out)
		}
	case !p.hasBest && now.Sub(p.lastPingBack) >= m.t.PunchInterval && m.allow(p, now):
		// No path yet, and the peer's NAT is open towards us from here:
		// ping back at once rather than at the next punch tick, so that
		// its pong confirms the path a punch interval sooner (at most
		// once a punch interval: the peer may ping back too).
		p.lastPingBack = now
		out = m.appendPing(p, from, now, out)
	}
	pong, err := m.seal(p.key, wire.Disco{Type: wire.DiscoPong, TxID: d.TxID, Src: from, Pad: pongPad(pingLen)})
	if err != nil {
		m.log.Warn("seal pong", "peer", p.name, "err", err)
		return out
	}
	return append(out, outPkt{pkt: pong, to: from, sock: sock})
}

// onPong completes a ping: it measures the path and may switch to it.
func (m *Manager) onPong(p *peer, d wire.Disco, from netip.AddrPort, now time.Time) {
	pg, ok := p.pending[d.TxID]
	if !ok {
		// Unsolicited or replayed (a replay would also fail the sealer's
		// window): nothing to learn from it.
		m.Stats.Rejected.Add(1)
		return
	}
	delete(p.pending, d.TxID)
	m.Stats.PongsReceived.Add(1)
	rtt := now.Sub(pg.sent)
	if pg.reply != nil {
		path := PathDirect
		if pg.relayed && p.route.tcp.Load() == nil {
			path = PathRelay
		}
		select {
		case pg.reply <- PingResult{Path: path, Endpoint: pg.to, RTT: rtt}:
		default:
		}
	}
	if pg.relayed {
		p.relayMisses = 0 // the relay carries this pair
		return
	}
	if pg.probe != 0 && p.mtu != nil {
		p.mtu.Answered(pg.probe, pg.round)
	}
	m.confirmAddr(from, p.key, now)
	if pg.to == p.best && pg.sock == p.bestSock && p.hasBest {
		p.lastPong, p.probes = now, 0
		// Smooth the RTT like TCP's SRTT (RFC 6298 §2.3, alpha 1/8).
		p.bestRTT += (rtt - p.bestRTT) / 8
		return
	}
	kind, ok := p.cands[pg.to]
	if !ok {
		kind = wire.EndpointPredict
	}
	if !p.prefer(pg.to, kind, rtt) {
		return
	}
	first := !p.hasBest
	old := p.best
	p.setBest(m.socks.Direct(pg.to, pg.sock), pg.sock, kind, rtt, now)
	if pg.sock != 0 || p.bday.active() {
		m.Stats.BirthdayWins.Add(1)
		m.closeAux(p, pg.sock)
	}
	if p.punching(now) && p.settleAt.IsZero() {
		p.settleAt = now.Add(m.t.Settle)
	}
	m.Stats.PathsFound.Add(1)
	if first {
		m.log.Info("direct path up", "peer", p.name, "endpoint", pg.to, "kind", kind, "rtt", rtt)
	} else {
		m.log.Info("direct path switched", "peer", p.name, "from", old, "to", pg.to, "kind", kind, "rtt", rtt)
	}
}

// appendPing seals a ping to addr and records it as pending.
func (m *Manager) appendPing(p *peer, to netip.AddrPort, now time.Time, out []outPkt) []outPkt {
	return m.appendPingVia(p, to, p.sockFor[to], now, out)
}

// appendPingVia pings to from a given socket.
func (m *Manager) appendPingVia(p *peer, to netip.AddrPort, sock int, now time.Time, out []outPkt) []outPkt {
	pkt, tx, err := m.newPing(p, to, now, nil, 0)
	if err != nil {
		m.log.Warn("seal ping", "peer", p.name, "err", err)
		return out
	}
	p.pending[tx].sock = sock
	return append(out, outPkt{pkt: pkt, to: to, sock: sock})
}

// newPing builds a ping padded by pad bytes and registers it.
func (m *Manager) newPing(p *peer, to netip.AddrPort, now time.Time, reply chan<- PingResult, pad int) ([]byte, [wire.TxIDLen]byte, error) {
	var tx [wire.TxIDLen]byte
	if _, err := rand.Read(tx[:]); err != nil {
		return nil, tx, err
	}
	pkt, err := m.seal(p.key, wire.Disco{Type: wire.DiscoPing, TxID: tx, Pad: pad})
	if err != nil {
		return nil, tx, err
	}
	p.pending[tx] = &ping{to: to, sent: now, reply: reply}
	m.Stats.PingsSent.Add(1)
	return pkt, tx, nil
}

// send writes packets; errors (the socket between rebinds, an unreachable
// network) are logged at debug: the next round retries. A ready follows
// its primes in out; when one of them failed it is not sent (it would
// claim a NAT open that isn't) and the next tick tries again.
func (m *Manager) send(out []outPkt) {
	var unprimed map[crypto.PublicKey]bool
	for _, o := range out {
		var err error
		switch {
		case o.ready && unprimed[o.peer]:
			m.readyUnsent(o.peer, false)
			continue
		case o.ready:
			if err = m.sendRelayed(o.peer, o.pkt); err != nil {
				m.readyUnsent(o.peer, errors.Is(err, ErrNoPath))
			}
		case o.ttl > 0:
			if err = m.socks.WriteTTL(o.pkt, o.to, o.sock, o.ttl); err != nil && o.sock == 0 {
				if unprimed == nil {
					unprimed = make(map[crypto.PublicKey]bool)
				}
				unprimed[o.peer] = true
			}
		default:
			err = m.socks.WriteVia(o.pkt, o.to, o.sock)
		}
		if err != nil {
			m.log.Debug("discovery send failed", "to", o.to, "ready", o.ready, "ttl", o.ttl, "err", err)
		}
	}
}

// currentEndpoints lists a peer's candidates as endpoints.
func currentEndpoints(p *peer) []wire.Endpoint {
	eps := make([]wire.Endpoint, 0, len(p.cands))
	for a, k := range p.cands {
		if k != KindPeerReflexive {
			eps = append(eps, wire.Endpoint{Addr: a, Kind: k})
		}
	}
	return eps
}

// ErrNoPath is returned by Ping for a peer with no path.
var ErrNoPath = errors.New("no path to the peer yet")
