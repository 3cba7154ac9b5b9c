package node

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/meshnode/meshnode/internal/wire"
)

// scope is what this node may probe on a peer's word (path.Scope): never
// its own addresses; a private LAN candidate only inside one of this node's
// own LAN prefixes (a remote peer can't aim us at our LAN's other hosts); a
// public candidate (STUN, port mapping, prediction, or a public interface
// address) only at a public address; and no address of a family this host
// has no address in (an IPv6-only host can't send to IPv4, nor an
// IPv4-only one to IPv6: punching there only wastes the budget). The path
// manager asks under its lock, so the answer comes from a snapshot the
// discoverer refreshes on every link poll.
type scope struct {
	// overlay is the mesh's own networks: the TUN's addresses are no way
	// to reach a peer, so they don't count as having a family.
	overlay []netip.Prefix
	local   atomic.Pointer[localNet]
}

// localNet is this host's addresses and the prefixes they sit in.
type localNet struct {
	addrs      []netip.Addr
	prefixes   []netip.Prefix
	has4, has6 bool // an address of the family that can reach a peer
}

// set records the host's prefixes (address with its length).
func (s *scope) set(prefixes []netip.Prefix) {
	ln := &localNet{prefixes: prefixes}
	for _, p := range prefixes {
		a := p.Addr()
		ln.addrs = append(ln.addrs, a)
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() ||
			slices.ContainsFunc(s.overlay, func(o netip.Prefix) bool { return o.Contains(a) }) {
			continue
		}
		ln.has4 = ln.has4 || a.Is4()
		ln.has6 = ln.has6 || a.Is6()
	}
	s.local.Store(ln)
}

// Permit implements path.Scope.
func (s *scope) Permit(a netip.AddrPort, kind string) bool {
	ip := a.Addr()
	ln := s.local.Load()
	if ln != nil && (slices.Contains(ln.addrs, ip) || ip.Is4() && !ln.has4 || ip.Is6() && !ln.has6) {
		return false
	}
	switch kind {
	case wire.EndpointLAN:
		if !ip.IsPrivate() {
			return true
		}
		return ln != nil && slices.ContainsFunc(ln.prefixes, func(p netip.Prefix) bool { return p.Masked().Contains(ip) })
	case wire.EndpointPublic:
		return wire.PublicAddr(ip)
	case wire.EndpointSTUN, wire.EndpointPortMap, wire.EndpointPredict:
		return !ip.IsPrivate()
	}
	// Peer-reflexive candidates are where the peer's sealed packets came
	// from; the TCP candidate is the source the coordinator itself saw.
	return true
}

// assumedPrefixes gives injected addresses (the in-process lab) the usual
// LAN prefix lengths: /24 for IPv4, /64 for IPv6.
func assumedPrefixes(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		bits := 64
		if a.Is4() {
			bits = 24
		}
		out = append(out, netip.PrefixFrom(a, bits))
	}
	return out
}
