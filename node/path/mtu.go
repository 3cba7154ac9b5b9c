package path

import (
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/pmtu"
)

// Path MTU discovery. Each direct path is searched with probes, discovery
// pings padded to the size of a tunnel packet under test (pmtu.Search
// decides the sizes, rounds and confirmations); the peer answers with a
// pong padded as much, so an answer proves both directions. What a path
// carries is handed to an MTUSink (the TUN's guard) as the largest inner
// packet: 0 while unknown and without a direct path (a relay or TCP path
// carries any size, fragmented where it must be).

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
// and reports the MTU when it changed.
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
	if r := p.mtu.Result(); r != p.mtuShown {
		if r != 0 {
			m.log.Info("path MTU", "peer", p.name, "endpoint", p.best, "mtu", r, "path_mtu", r+pmtu.Overhead(p.best.Addr().Is6()))
		}
		p.mtuShown = r
		ups = append(ups, mtuUpdate{p.key, r})
	}
	return out, ups
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
