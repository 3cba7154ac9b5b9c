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
func (n *NAT) mappingFor(src, dst netip.AddrPort, now time.Time) (m *mapping, isNew bool) {
	key := mapKey{internal: src, dest: n.destKey(dst)}
	if m := n.byKey[key]; m != nil {
		if !n.expired(m, now) {
			return m, false
		}
		n.expire(m)
	}
	port, ok := n.allocPort(src.Port(), now)
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

// portFree reports whether port can take a new mapping, reclaiming it from
// an expired one.
func (n *NAT) portFree(port int, now time.Time) bool {
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
func (n *NAT) allocPort(internal uint16, now time.Time) (uint16, bool) {
	var start int
	switch n.cfg.PortAlloc {
	case PortPreserve:
		if internal != 0 && n.portFree(int(internal), now) {
			return internal, true
		}
		start = max(int(internal), natFirstPort)
	case PortSequential:
		for range natPortSpan {
			p := n.next
			n.next = wrapPort(n.next + n.cfg.PortStep)
			if n.portFree(p, now) {
				return uint16(p), true
			}
		}
		return 0, false
	case PortRandom:
		for range randomTries {
			if p := natFirstPort + n.rng.IntN(natPortSpan); n.portFree(p, now) {
				return uint16(p), true
			}
		}
		start = natFirstPort + n.rng.IntN(natPortSpan)
	}
	for i := range natPortSpan {
		if p := wrapPort(start + i); n.portFree(p, now) {
			return uint16(p), true
		}
	}
	return 0, false
}
