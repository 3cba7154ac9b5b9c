package path

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/pmtu"
)

// Path kinds, as `meshnode status --json` prints them.
const (
	PathDirect = bind.KindDirect
	PathRelay  = bind.KindRelay
	PathNone   = "none"
)

// PeerPath is one peer's path as status shows it.
type PeerPath struct {
	Key  crypto.PublicKey
	Path string
	// Kind tells the direct paths (UDP, punched TCP) and the relays (UDP,
	// the coordinator's TCP relay) apart, as path reports and metrics do.
	Kind     wire.PathKind
	Endpoint netip.AddrPort // the direct address or the UDP relay's; invalid when none
	Via      string         // the relay in use, when relayed
	Latency  time.Duration  // smoothed RTT of the direct path
	// Candidates counts the peer's addresses this node may punch (its
	// reported endpoints that pass this node's scope, and peer-reflexive
	// ones): none means only the relay can carry it.
	Candidates int
	// MTU is the largest inner packet the direct path carries in one
	// tunnel packet, PathMTU that tunnel packet's size on the underlay
	// (MTU plus 60 bytes over IPv4, 80 over IPv6); 0 before the search
	// settles and over TCP. Through the UDP relay MTU is the relay's fit
	// (pmtu.RelayMTU) and PathMTU includes the relay frame's header.
	MTU, PathMTU int
	// PunchFailures counts the punch rounds that failed in a row since
	// the last direct path.
	PunchFailures int
}

// Path returns a peer's current path.
func (m *Manager) Path(key crypto.PublicKey) PeerPath {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[key]
	if !ok {
		return PeerPath{Key: key, Path: PathNone, Kind: wire.PathNone}
	}
	pp := PeerPath{Key: key, Path: PathNone, Kind: wire.PathNone, Candidates: len(p.cands), PunchFailures: p.failures}
	switch {
	case p.hasBest:
		pp.Path, pp.Kind, pp.Endpoint, pp.Latency = PathDirect, wire.PathDirectUDP, p.best, p.bestRTT
		if p.mtu != nil && p.mtu.Result() > 0 {
			pp.MTU = p.mtu.Result()
			pp.PathMTU = pp.MTU + pmtu.Overhead(p.best.Addr().Is6())
		}
	case p.route.tcp.Load() != nil:
		i := p.route.tcp.Load().Info()
		pp.Path, pp.Kind, pp.Endpoint, pp.Via = i.Kind, wire.PathDirectTCP, i.Addr, i.Via
	case p.online:
		if rl := m.relay.Load(); rl != nil {
			i := rl.Info()
			pp.Path, pp.Endpoint, pp.Via = i.Kind, i.Addr, i.Via
			// The UDP relay has an address; the TCP relay is a stream.
			pp.Kind = wire.PathRelayedTCP
			if i.Addr.IsValid() {
				pp.Kind = wire.PathRelayedUDP
			}
			if p.mtuShown > 0 && i.Addr.IsValid() {
				// The UDP relay's fit; its frames carry the relay's
				// header too.
				pp.MTU = p.mtuShown
				pp.PathMTU = pp.MTU + pmtu.Overhead(i.Addr.Addr().Is6()) + wire.RelayHeaderLen
			}
		}
	}
	return pp
}

// PingResult is one answered user ping.
type PingResult struct {
	Path string
	// Kind tells the direct paths (UDP, punched TCP) and the relays (UDP,
	// the coordinator's TCP relay) apart, as path reports and metrics do.
	Kind     wire.PathKind
	Endpoint netip.AddrPort
	RTT      time.Duration
}

// Ping sends one discovery ping to the peer over its current direct path and
// waits for the pong. It is what `meshnode ping` shows.
func (m *Manager) Ping(ctx context.Context, key crypto.PublicKey) (PingResult, error) {
	reply := make(chan PingResult, 1)
	m.mu.Lock()
	p, ok := m.peers[key]
	if !ok {
		m.mu.Unlock()
		return PingResult{}, fmt.Errorf("%s is not a peer", key.Short())
	}
	relayed := !p.hasBest
	if relayed && p.route.tcp.Load() == nil && (m.relay.Load() == nil || !p.online) {
		m.mu.Unlock()
		return PingResult{}, fmt.Errorf("%s: %w", p.name, ErrNoPath)
	}
	to := p.best
	pkt, tx, err := m.newPing(p, to, time.Now(), reply, 0)
	if err == nil {
		p.pending[tx].sock = p.bestSock
	}
	if err == nil && relayed {
		pg := p.pending[tx]
		pg.relayed = true
		if rl := m.relay.Load(); rl != nil {
			pg.to = rl.Info().Addr
		}
	}
	m.mu.Unlock()
	if err != nil {
		return PingResult{}, err
	}
	if relayed {
		if err := m.sendRelayed(key, pkt); err != nil {
			return PingResult{}, fmt.Errorf("%s via the relay: %w", p.name, err)
		}
	} else {
		m.send([]outPkt{{pkt: pkt, to: to, sock: p.bestSock}})
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		m.mu.Lock()
		delete(p.pending, tx)
		m.mu.Unlock()
		return PingResult{}, ctx.Err()
	}
}

// DiscoKeys is how many keys discovery holds sealing state for: the peers'
// keys, never a stranger's.
func (m *Manager) DiscoKeys() int { return m.sealer.Len() }
