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
// (pmtu.KernelPathMTU): the socket fragments what exceeds it, so probes
// larger are not sent (they would arrive in pieces and prove nothing).
// Call it before peers are added.
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
func (p *peer) startMTU(now time.Time) {
	if p.mtu != nil {
		p.mtu.Start(now, p.best.Addr().Is6())
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
	return append(out, outPkt{pkt: pkt, to: p.best, sock: p.bestSock, probe: true})
}

// kernelAllows reports whether the host sends pkt to a unfragmented: no
// larger than the path MTU its kernel learned (unknown: yes). last caches
// one answer for a batch of probes to one address.
func (m *Manager) kernelAllows(pkt []byte, to netip.AddrPort, last *kernelView) bool {
	if m.kernelMTU == nil {
		return true
	}
	a := to.Addr()
	if !last.addr.IsValid() || last.addr != a {
		mtu, err := m.kernelMTU(a)
		if err != nil {
			mtu = 0
		}
		*last = kernelView{a, mtu}
	}
	hdr := 20 + 8
	if a.Is6() && !a.Is4In6() {
		hdr = 40 + 8
	}
	return last.mtu == 0 || len(pkt)+hdr <= last.mtu
}

// kernelView is the kernel's path MTU to one address (0: unknown).
type kernelView struct {
	addr netip.Addr
	mtu  int
}
