package path

import (
	"bytes"
	"time"
)

// An idle path costs only its keepalives, and a quiet mesh is one where
// they are as few as the NATs allow (issue: "a quiet idle mesh"):
//   - one side keeps the path: a ping and its pong refresh both NATs'
//     mappings (conntrack refreshes a flow on packets either way). The
//     side with the lower key keeps it, at its own interval; a fixed
//     keeper breaks the tie two sides in step would otherwise keep. The
//     other side pings when it has not been pinged for 1.5 of its own
//     intervals (the keeper is gone, or keeps a longer interval than this
//     side's NAT allows), and every sharedCheck intervals anyway: the
//     keeper's pings show only that the keeper's packets arrive, a pong to
//     its own ping that this side's do;
//   - the interval follows the NAT's measured mapping lifetime
//     (SetIdleKeepalive, from the discoverer's lifetime probe), never
//     below Timing.Keepalive, and never again above half an interval a
//     path did not survive.

// IdleKeepalive is the heartbeat interval of idle paths now.
func (m *Manager) IdleKeepalive() time.Duration { return m.idleKeepalive() }

// idleKeepalive is the heartbeat interval of idle paths now.
func (m *Manager) idleKeepalive() time.Duration {
	if d := time.Duration(m.idle.Load()); d > 0 {
		return d
	}
	return m.t.Keepalive
}

// SetIdleKeepalive spaces idle heartbeats d apart, within the bounds
// above, and returns the interval it set.
func (m *Manager) SetIdleKeepalive(d time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.idleCeiling; c > 0 {
		d = min(d, c)
	}
	d = max(d, m.t.Keepalive)
	m.idle.Store(int64(d))
	return d
}

// idleLost lowers the idle interval after a path died while idle at more
// than Timing.Keepalive: the mapping didn't live as long as measured (the
// peer's NAT forgets sooner, or it changed). Caller holds mu.
func (m *Manager) idleLost(interval time.Duration) {
	if interval <= m.t.Keepalive {
		return
	}
	m.idleCeiling = max(m.t.Keepalive, interval/2)
	m.idle.Store(int64(m.t.Keepalive))
	m.log.Warn("an idle path outlived its NAT mapping; keepalives back to the default", "interval", interval, "keepalive", m.t.Keepalive, "ceiling", m.idleCeiling)
}

// addrTTL is how long a confirmed source stays attributed without a pong:
// a few idle intervals, so a long idle interval doesn't forget a quiet
// peer's address between its heartbeats.
func (m *Manager) addrTTL() time.Duration {
	return max(m.t.AddrTTL, addrTTLKeepalives*m.idleKeepalive())
}

// peerKeeps reports whether the peer's own heartbeats keep the idle path
// (see above), so that ours would only repeat them.
func (m *Manager) peerKeeps(p *peer, now time.Time, interval time.Duration) bool {
	if self := m.sealer.Public(); bytes.Compare(self[:], p.key[:]) < 0 {
		return false // this side is the keeper
	}
	return p.lastPingSrc == p.best && !p.lastPingAt.IsZero() &&
		now.Sub(p.lastPingAt) < interval*3/2 && now.Sub(p.lastPong) < sharedCheck*interval
}

// sharedCheck is how many intervals the side that doesn't keep an idle
// path goes without a pong of its own: a path that carries only the
// keeper's direction is found dead within sharedCheck+MissedPongs
// intervals, and the check adds a quarter to the pair's idle packets.
const sharedCheck = 4
