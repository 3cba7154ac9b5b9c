package natlab

import (
	"net/netip"
	"time"
)

// mapKey identifies a mapping: the inside endpoint plus as much of the
// destination as the Mapping behaviour distinguishes (RFC 4787 §4.1).
type mapKey struct {
	internal netip.AddrPort
	dest     netip.AddrPort // zero (EIM), IP with port 0 (ADM) or IP:port (APDM)
}

// mapping is one NAT binding and the remotes it has sent to, which is what
// the Filtering behaviour checks (RFC 4787 §5).
type mapping struct {
	key      mapKey
	external netip.AddrPort
	lastUsed time.Time
	sentTo   map[netip.AddrPort]struct{}
	sentToIP map[netip.Addr]struct{}
}

// trackKey is an unsolicited sender and the public port it reached, kept
// by a TrackUnsolicited NAT's own stack: the reply side of a flow that a
// later inside flow to that sender would collide with.
type trackKey struct {
	remote netip.AddrPort
	port   uint16
}

// trackSweep is the tracked-pair count at which expired pairs are swept
// (they are otherwise removed only when met), so a NAT probed from many
// addresses holds no more than its live pairs and this many.
const trackSweep = 4096

// track keeps an inbound packet no mapping accepted in the NAT's own stack
// (TrackUnsolicited), as Linux conntrack does when no input filter drops
// it first.
func (n *NAT) track(p *packet, now time.Time) {
	if len(n.tracked) >= trackSweep {
		n.sweepTracked(now)
	}
	k := trackKey{remote: p.src, port: p.dst.Port()}
	if !n.takenBy(p.src, k.port, now) {
		n.lab.logPacket(p, "%s keeps it (no input filter): port %d is taken towards %v", n.cfg.Name, k.port, p.src)
	} else {
		n.lab.logPacket(p, "%s keeps it (tracked already)", n.cfg.Name)
	}
	n.tracked[k] = now
	n.stats.Tracked++
}

// sweepTracked forgets the tracked pairs that expired.
func (n *NAT) sweepTracked(now time.Time) {
	for k := range n.tracked {
		n.takenBy(k.remote, k.port, now)
	}
}

// takenBy reports whether an unsolicited packet from remote to port is
// still tracked, forgetting it once IdleTimeout passed without another.
func (n *NAT) takenBy(remote netip.AddrPort, port uint16, now time.Time) bool {
	k := trackKey{remote: remote, port: port}
	last, ok := n.tracked[k]
	if ok && now.Sub(last) >= n.cfg.IdleTimeout {
		delete(n.tracked, k)
		return false
	}
	return ok
}

func (m *mapping) accepts(remote netip.AddrPort, f Filtering) bool {
	switch f {
	case EndpointIndependentFiltering:
		return true
	case AddressDependentFiltering:
		_, ok := m.sentToIP[remote.Addr()]
		return ok
	default:
		_, ok := m.sentTo[remote]
		return ok
	}
}

func (n *NAT) destKey(dst netip.AddrPort) netip.AddrPort {
	switch n.cfg.Mapping {
	case EndpointIndependent:
		return netip.AddrPort{}
	case AddressDependent:
		return netip.AddrPortFrom(dst.Addr(), 0)
	default:
		return dst
	}
}

func (n *NAT) expired(m *mapping, now time.Time) bool {
	return now.Sub(m.lastUsed) >= n.cfg.IdleTimeout
}

func (n *NAT) expire(m *mapping) {
	n.stats.MappingsExpired++
	n.lab.logEvent("%s: mapping %v as %v expired (idle %v)", n.cfg.Name, m.key.internal, m.external, n.cfg.IdleTimeout)
	delete(n.byKey, m.key)
	delete(n.byPort, m.external.Port())
}

// mappingFor returns the live mapping for src sending to dst, creating one
// if needed. It returns nil when no external port is free.
//
// On a TrackUnsolicited NAT a flow whose port an unsolicited packet from
// dst took gets a mapping of its own, keyed by dst, on another port.
func (n *NAT) mappingFor(src, dst netip.AddrPort, now time.Time) (m *mapping, isNew bool) {
	moved := mapKey{internal: src, dest: dst}
	if n.cfg.TrackUnsolicited && n.destKey(dst) != dst {
		if m := n.live(moved, now); m != nil {
			return m, false
		}
	}
	key := mapKey{internal: src, dest: n.destKey(dst)}
	if m := n.live(key, now); m != nil {
		_, sent := m.sentTo[dst]
		if sent || !n.takenBy(dst, m.external.Port(), now) {
			return m, false
		}
		n.stats.Remapped++
		n.lab.logEvent("%s: %v's flow to %v can't use %v (taken by an early packet): another port", n.cfg.Name, src, dst, m.external)
		key = moved
	}
	port, ok := n.allocPort(src.Port(), dst, now)
	if !ok {
		return nil, false
	}
	m = &mapping{
		key:      key,
		external: netip.AddrPortFrom(n.cfg.PublicIP, port),
		lastUsed: now,
		sentTo:   make(map[netip.AddrPort]struct{}),
		sentToIP: make(map[netip.Addr]struct{}),
	}
	n.byKey[key] = m
	n.byPort[port] = m
	n.stats.MappingsCreated++
	return m, true
}

// live returns the mapping for key, nil when none or expired.
func (n *NAT) live(key mapKey, now time.Time) *mapping {
	m := n.byKey[key]
	if m == nil {
		return nil
	}
	if n.expired(m, now) {
		n.expire(m)
		return nil
	}
	return m
}

// portFree reports whether port can take a new mapping towards dst,
// reclaiming it from an expired one. A port an unsolicited packet from dst
// took (TrackUnsolicited) is not free for it.
func (n *NAT) portFree(port int, dst netip.AddrPort, now time.Time) bool {
	if n.takenBy(dst, uint16(port), now) {
		return false
	}
	m := n.byPort[uint16(port)]
	if m == nil {
		return true
	}
	if n.expired(m, now) {
		n.expire(m)
		return true
	}
	return false
}

// wrapPort folds p into natFirstPort..natLastPort.
func wrapPort(p int) int {
	return natFirstPort + (p-natFirstPort)%natPortSpan
}

// randomTries bounds PortRandom's random draws before it scans linearly,
// so a nearly full table still ends.
const randomTries = 64

// allocPort picks the external port of a new mapping per PortAlloc. Every
// loop is bounded by the size of the port range.
func (n *NAT) allocPort(internal uint16, dst netip.AddrPort, now time.Time) (uint16, bool) {
	var start int
	switch n.cfg.PortAlloc {
	case PortPreserve:
		if internal != 0 && n.portFree(int(internal), dst, now) {
			return internal, true
		}
		start = max(int(internal), natFirstPort)
	case PortSequential:
		for range natPortSpan {
			p := n.next
			n.next = wrapPort(n.next + n.cfg.PortStep)
			if n.portFree(p, dst, now) {
				return uint16(p), true
			}
		}
		return 0, false
	case PortRandom:
		for range randomTries {
			if p := natFirstPort + n.rng.IntN(natPortSpan); n.portFree(p, dst, now) {
				return uint16(p), true
			}
		}
		start = natFirstPort + n.rng.IntN(natPortSpan)
	}
	for i := range natPortSpan {
		if p := wrapPort(start + i); n.portFree(p, dst, now) {
			return uint16(p), true
		}
	}
	return 0, false
}
