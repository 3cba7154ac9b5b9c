package path

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The birthday technique (nat-traversal notes) for a random-port symmetric
// NAT facing an endpoint-independent one: the hard side opens many sockets,
// each holding a mapping towards the easy side's public address; the easy
// side probes random ports of the hard side's public IP. With 256 mappings,
// 1024 random probes succeed 98% of the time and 2048 99.9%. Hard NATs at
// both ends would need ~170,000 probes a side: they use the relay instead.
// Its timing (rate, duration, refresh, retry) is in Timing.
const (
	birthdaySockets = 256
	birthdayProbes  = 2048
	// The port range NATs allocate from (RFC 6056 §3.2: the dynamic range
	// often starts at 1024).
	firstNATPort = 1024
	lastNATPort  = 65535
)

type birthdayRole int

const (
	roleNone birthdayRole = iota
	roleHard
	roleEasy
)

// birthday is one peer's attempt.
type birthday struct {
	role  birthdayRole
	until time.Time
	last  time.Time
	sent  int
	socks []int
	// opening is set while the hard side's sockets are being opened, with
	// the manager's lock released.
	opening bool
	// target is the easy side's public address (hard role) or the hard
	// side's public IP (easy role, port ignored).
	target netip.AddrPort
	next   time.Time
}

func (b *birthday) active() bool { return b.role != roleNone }

// hardNAT is an endpoint-dependent mapping with unpredictable ports.
func hardNAT(n *wire.NATInfo) bool {
	return n != nil && n.Hard()
}

// easyNAT is no NAT or an endpoint-independent mapping.
func easyNAT(n *wire.NATInfo) bool {
	return n != nil && n.Easy()
}

// birthdayRoleFor decides this node's role against a peer.
func birthdayRoleFor(self, peer *wire.NATInfo) birthdayRole {
	switch {
	case hardNAT(self) && easyNAT(peer):
		return roleHard
	case easyNAT(self) && hardNAT(peer):
		return roleEasy
	}
	return roleNone
}

// startBirthday begins an attempt after a failed punch round, when the two
// NATs call for it. It reports whether the hard side's sockets must be
// opened (openBirthdaySockets, after mu is released).
func (m *Manager) startBirthday(p *peer, now time.Time) bool {
	if m.aux == nil || p.bday.active() || now.Before(p.bday.next) {
		return false
	}
	role := birthdayRoleFor(&m.self, p.nat)
	if role == roleNone {
		return false
	}
	var public netip.AddrPort
	for a, kind := range p.cands {
		if kind == wire.EndpointSTUN {
			public = a
		}
	}
	if !public.IsValid() {
		return false
	}
	p.bday = birthday{role: role, until: now.Add(m.t.BirthdayDuration), target: public, opening: role == roleHard}
	m.Stats.BirthdayAttempts.Add(1)
	m.log.Info("birthday technique: starting", "peer", p.name, "role", map[birthdayRole]string{roleHard: "hard", roleEasy: "easy"}[role], "target", public)
	return p.bday.opening
}

// openBirthdaySockets opens the hard side's sockets for peer k with no lock
// held, then hands them to the attempt if it still wants them.
func (m *Manager) openBirthdaySockets(k crypto.PublicKey, now time.Time) {
	m.mu.Lock()
	aux := m.aux
	m.mu.Unlock()
	socks, err := aux.OpenAux(birthdaySockets)
	m.mu.Lock()
	defer m.unlock()
	p, ok := m.peers[k]
	if !ok || !p.bday.opening {
		m.closing = append(m.closing, socks...)
		return
	}
	p.bday.opening = false
	if err != nil {
		m.log.Warn("birthday technique: auxiliary sockets", "peer", p.name, "opened", len(socks), "err", err)
		m.closing = append(m.closing, socks...)
		p.bday = birthday{next: now.Add(m.t.BirthdayRetry)}
		return
	}
	p.bday.socks = socks
}

// advanceBirthday sends this tick's share of an attempt and ends it on
// success or timeout. The hard side's pings only open its own NAT's
// mappings (the easy side's filter drops them; its probes find them), so
// where the easy side is behind a NAT they go as primes (order.go): at
// full TTL they would reach a router that remaps when punched early and
// take the very tuples the easy side's probes need.
func (m *Manager) advanceBirthday(p *peer, now time.Time, canPrime bool, out []outPkt) []outPkt {
	b := &p.bday
	switch {
	case !b.active():
		return out
	case p.hasBest:
		m.endBirthday(p, p.bestSock, now)
		return out
	case now.After(b.until):
		m.log.Info("birthday technique: no hit; the relay carries this peer", "peer", p.name, "probes", b.sent)
		m.endBirthday(p, 0, now)
		return out
	}
	if b.role == roleHard {
		if now.Sub(b.last) >= m.t.BirthdayRefresh {
			b.last = now
			prime := canPrime && p.nat != nil && p.nat.Mapping != wire.MappingNone
			for _, s := range b.socks {
				n := len(out)
				out = m.appendPingVia(p, b.target, s, now, out)
				if prime && len(out) > n {
					out[n].ttl = primeTTL
				}
			}
		}
		return out
	}
	// Easy side: birthdayRate probes a second, spread over the ticks.
	due := min(int(now.Sub(b.until.Add(-m.t.BirthdayDuration)).Seconds()*float64(m.t.BirthdayRate)), birthdayProbes)
	for ; b.sent < due; b.sent++ {
		port := firstNATPort + rand.IntN(lastNATPort-firstNATPort+1)
		out = m.appendPingVia(p, netip.AddrPortFrom(b.target.Addr(), uint16(port)), 0, now, out)
	}
	return out
}

// endBirthday ends an attempt, keeping only the socket that won (if any).
func (m *Manager) endBirthday(p *peer, keep int, now time.Time) {
	m.closeAux(p, keep)
	p.bday = birthday{next: now.Add(m.t.BirthdayRetry)}
}

// closeAux closes a peer's auxiliary sockets except keep: it queues them
// for m.unlock, which closes them once mu is released.
func (m *Manager) closeAux(p *peer, keep int) {
	var drop []int
	for _, s := range p.bday.socks {
		if s != keep {
			drop = append(drop, s)
		}
	}
	if keep == 0 && p.bestSock != 0 {
		drop = append(drop, p.bestSock)
	}
	m.closing = append(m.closing, drop...)
	for a, s := range p.sockFor {
		if s != keep {
			delete(p.sockFor, a)
		}
	}
	if keep != 0 {
		p.bday.socks = []int{keep}
	} else {
		p.bday.socks = nil
	}
}
