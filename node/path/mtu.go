package path

import (
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/pmtu"
)

// Path MTU discovery. Each direct path is searched with probes, discovery
// pings padded to the size of a tunnel packet under test (pmtu.Search
// decides the sizes, rounds and confirmations); the peer answers with a
// pong padded as much, so an answer proves both directions. What a path
// carries is handed to an MTUSink (the TUN's guard) as the largest inner
// packet: 0 while unknown, and over a TCP path, which carries any size.
// Through the UDP relay it is pmtu.RelayMTU: the relay's header would
// push a full-size packet past a 1500-byte link, to be fragmented.

// MTUSink hears each peer's path MTU.
type MTUSink interface {
	SetMTU(peer crypto.PublicKey, mtu int)
}

// EnablePMTU turns path MTU discovery on for a TUN of tunMTU bytes,
// reporting to sink. kernel, when set, is the host's path MTU to an address
// (pmtu.KernelPathMTU): the socket fragments what exceeds it, so answers to
// larger probes prove nothing. Call it before peers are added.
func (m *Manager) EnablePMTU(tunMTU int, sink MTUSink, kernel func(netip.Addr) (int, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mtuCfg, m.mtuSink, m.kernelMTU = m.t.pmtuConfig(tunMTU), sink, kernel
}

// mtuUpdate is a peer's MTU to hand the sink once mu is released.
type mtuUpdate struct {
	peer crypto.PublicKey
	mtu  int
}

// advanceMTU runs a peer's search: it probes while the direct path is up,
// and reports the MTU of the peer's route when it changed.
func (m *Manager) advanceMTU(p *peer, now time.Time, out []outPkt, ups []mtuUpdate) ([]outPkt, []mtuUpdate) {
	if p.mtu == nil {
		return out, ups
	}
	if p.hasBest {
		sizes, round := p.mtu.Tick(now, p.active(now, m.t))
		for _, size := range sizes {
			out = m.appendProbe(p, size, round, now, out)
		}
	}
	return out, m.noteMTU(p, ups)
}

// noteMTU adds p's MTU to ups when it changed since last handed out.
func (m *Manager) noteMTU(p *peer, ups []mtuUpdate) []mtuUpdate {
	if p.mtu == nil {
		return ups
	}
	r := m.routeMTU(p)
	if r == p.mtuShown {
		return ups
	}
	switch {
	case r != 0 && p.hasBest:
		m.log.Info("path MTU", "peer", p.name, "endpoint", p.best, "mtu", r, "path_mtu", r+pmtu.Overhead(p.best.Addr().Is6()))
	case r != 0:
		m.log.Debug("path MTU through the UDP relay", "peer", p.name, "mtu", r)
	}
	p.mtuShown = r
	return append(ups, mtuUpdate{p.key, r})
}

// routeMTU is the MTU of the route RouteTo takes to p: the direct path's
// (searched; 0 until known), none over a punched TCP path, the UDP
// relay's (pmtu.RelayMTU) while the relay in use is one, else none.
func (m *Manager) routeMTU(p *peer) int {
	switch {
	case p.hasBest:
		return p.mtu.Result()
	case p.route.tcp.Load() != nil:
		return 0
	}
	if r := m.relay.Load(); r != nil {
		if i := r.Info(); i.Kind == bind.KindRelay && i.Addr.IsValid() {
			return pmtu.RelayMTU
		}
	}
	return 0
}

// refreshMTUs hands the sink every peer's MTU that changed with the relay
// in use, at once rather than at the next tick: the guard must fit the
// first packets to a newly relayed peer, the TCP handshake among them.
func (m *Manager) refreshMTUs() {
	m.mu.Lock()
	var ups []mtuUpdate
	for _, p := range m.peers {
		ups = m.noteMTU(p, ups)
	}
	sink := m.mtuSink
	m.unlock()
	applyMTUs(sink, ups)
}

// unlockNotingMTU releases mu and hands the sink p's MTU if its route's
// changed.
func (m *Manager) unlockNotingMTU(p *peer) {
	ups := m.noteMTU(p, nil)
	sink := m.mtuSink
	m.unlock()
	applyMTUs(sink, ups)
}

// applyMTUs hands ups to sink, with mu released.
func applyMTUs(sink MTUSink, ups []mtuUpdate) {
	for _, u := range ups {
		sink.SetMTU(u.peer, u.mtu)
	}
}

// startMTU searches a new direct path.
func (p *peer) startMTU() {
	if p.mtu != nil {
		p.mtu.Start(p.best.Addr().Is6())
	}
}

// stopMTU forgets the MTU of a path that is gone.
func (p *peer) stopMTU() {
	if p.mtu != nil {
		p.mtu.Stop()
	}
}

// probePad is the padding that makes a ping the size of a tunnel packet
// carrying an inner packet of size bytes.
func probePad(size int) int {
	return max(0, pmtu.Probe(size)-len(wire.DiscoMagic)-crypto.SealOverhead-wire.DiscoPingLen)
}

// pongPad pads a pong to the size of the ping it answers, pingLen bytes on
// the wire: a probe's answer carries as much back.
func pongPad(pingLen int) int {
	return max(0, pingLen-len(wire.DiscoMagic)-crypto.SealOverhead-wire.DiscoPongLen)
}

// appendProbe seals a probe of size to the peer's direct path.
func (m *Manager) appendProbe(p *peer, size int, round uint32, now time.Time, out []outPkt) []outPkt {
	pkt, tx, err := m.newPing(p, p.best, now, nil, probePad(size))
	if err != nil {
		m.log.Warn("seal path MTU probe", "peer", p.name, "err", err)
		return out
	}
	pg := p.pending[tx]
	pg.sock, pg.probe, pg.round = p.bestSock, size, round
	return append(out, outPkt{pkt: pkt, to: p.best, sock: p.bestSock})
}

// hostView asks for the host's path MTU to a peer's direct path.
type hostView struct {
	peer crypto.PublicKey
	addr netip.AddrPort
}

// wantHostView adds p to views while its probes await answers: the host's
// limit must be fresh when the round is scored (pmtu.Search.SetHostLimit).
func (m *Manager) wantHostView(p *peer, views []hostView) []hostView {
	if m.kernelMTU == nil || p.mtu == nil || !p.hasBest || !p.mtu.Probing() {
		return views
	}
	return append(views, hostView{p.key, p.best})
}

// readHostViews asks the kernel (a socket per query: mu is not held) and
// hands each search its limit, unless the path changed meanwhile.
func (m *Manager) readHostViews(kernel func(netip.Addr) (int, error), views []hostView) {
	if len(views) == 0 {
		return
	}
	limits := make([]int, len(views))
	for i, v := range views {
		if mtu, err := kernel(v.addr.Addr()); err == nil {
			limits[i] = max(0, mtu-pmtu.Overhead(v.addr.Addr().Is6()))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, v := range views {
		if p, ok := m.peers[v.peer]; ok && p.mtu != nil && p.hasBest && p.best == v.addr {
			p.mtu.SetHostLimit(limits[i])
		}
	}
}
