package path

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// A WireGuard packet from an address no pong has confirmed is dropped by
// the Bind: only a pong attributes a source (disco.go onPong). But when
// that address is a candidate of a peer with no direct path yet, the
// packet says what the peer's ping from there would (onPing): the peer's
// NAT has sent to us from that mapping, so a ping of ours there can't
// arrive early (order.go), and its pong confirms the path. A node that
// restarted meets this at once: its peers keep sending, with the session
// it lost, from mappings that are open towards it, while its own pings to
// them wait for their ready, and their heartbeats may be seconds away.
// Whoever can forge such a packet could as well send the early packet
// itself, so acting on it opens nothing new; the ping goes only to the
// peer's own candidate, at most once a punch interval (lastPingBack).

// strayQueue bounds the sources waiting for the manager's loop; more are
// dropped (a peer's next packet comes again).
const strayQueue = 16

// strayRate bounds the sources the manager looks up a second: each costs
// a look at every peer without a direct path, and anyone can send packets
// shaped like WireGuard's from anywhere. A peer sends many, so a few a
// second find it.
const strayRate = 20

// Stray takes the source of a WireGuard packet the Bind dropped for want
// of a confirmed peer there (bind.Handlers.Stray). It never blocks: it
// runs on the Bind's receive path.
func (m *Manager) Stray(from netip.AddrPort) {
	if !m.strayLimit.Allow() {
		return
	}
	select {
	case m.strays <- unmap(from):
	default:
	}
}

// newStrayLimit is Stray's budget.
func newStrayLimit() *rate.Limiter { return rate.NewLimiter(strayRate, strayRate) }

// onStray pings from at once when it is a candidate of an online peer with
// no direct path yet (see above).
func (m *Manager) onStray(from netip.AddrPort, now time.Time) {
	var out []outPkt
	m.mu.Lock()
	for _, p := range m.peers {
		if _, ok := p.cands[from]; !ok || p.hasBest || !p.online {
			continue
		}
		if now.Sub(p.lastPingBack) >= m.t.PunchInterval && m.allow(p, now) {
			p.lastPingBack = now
			out = m.appendPing(p, from, now, out)
		}
		break
	}
	m.unlock()
	m.send(out)
}
