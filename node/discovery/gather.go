package discovery

import (
	"context"
	"net"
	"net/netip"
	"slices"

	"github.com/meshnode/meshnode/internal/wire"
)

// Gatherer collects this node's candidate endpoints.
type Gatherer struct {
	Prober *Prober
	// LocalAddrs lists the host's addresses (nil: the OS's interfaces).
	LocalAddrs func() []netip.Addr
	// Exclude holds prefixes never offered as candidates: the overlay.
	Exclude []netip.Prefix
}

// Result is one gathering.
type Result struct {
	Endpoints []wire.Endpoint
	Mapping   Mapping
	// Server is the STUN server that answered.
	Server Target
	// STUNErr is set when no STUN server answered (UDP blocked, or the
	// coordinator's STUN port unreachable).
	STUNErr error
}

// maxLAN bounds the LAN candidates: the coordinator refuses more than
// wire.MaxEndpoints, and the STUN mapping and a port mapping need room.
// Addresses sort IPv4 first, so a host with many IPv6 addresses loses some
// of those.
const maxLAN = wire.MaxEndpoints - 2

// Gather lists LAN candidates and, through the first STUN server that
// answers, the public mapping and the NAT's mapping behaviour. port is the
// shared socket's.
func (g *Gatherer) Gather(ctx context.Context, servers []Target, port uint16) Result {
	locals := g.locals()
	var res Result
	for _, a := range locals[:min(len(locals), maxLAN)] {
		res.Endpoints = append(res.Endpoints, wire.Endpoint{Addr: netip.AddrPortFrom(a, port), Kind: wire.EndpointLAN})
	}
	res.STUNErr = ErrNoResponse
	for _, s := range servers {
		m, err := g.Prober.ClassifyMapping(ctx, s, port, locals)
		if !m.Public.IsValid() {
			res.STUNErr = err
			continue
		}
		res.STUNErr = nil
		res.Mapping, res.Server = m, s
		if m.Behaviour != wire.MappingNone {
			res.Endpoints = append(res.Endpoints, wire.Endpoint{Addr: m.Public, Kind: wire.EndpointSTUN})
		}
		break
	}
	return res
}

// locals returns the usable local addresses: no loopback, link-local,
// multicast or overlay addresses.
func (g *Gatherer) locals() []netip.Addr {
	var all []netip.Addr
	if g.LocalAddrs != nil {
		all = g.LocalAddrs()
	} else {
		all = InterfaceAddrs()
	}
	var out []netip.Addr
	for _, a := range all {
		a = a.Unmap()
		if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			continue
		}
		if slices.ContainsFunc(g.Exclude, func(p netip.Prefix) bool { return p.Contains(a) }) {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

// InterfaceAddrs lists the addresses of the host's up interfaces.
func InterfaceAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range InterfacePrefixes() {
		out = append(out, p.Addr())
	}
	return out
}

// InterfacePrefixes lists the host's interface addresses with their prefix
// lengths (interfaces up, loopback left out).
func InterfacePrefixes() []netip.Prefix {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()))
			}
		}
	}
	return out
}

// SameEndpoints reports whether two candidate lists hold the same set.
func SameEndpoints(a, b []wire.Endpoint) bool {
	key := func(e wire.Endpoint) string { return e.Kind + " " + e.Addr.String() }
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i, e := range a {
		as[i] = key(e)
	}
	for i, e := range b {
		bs[i] = key(e)
	}
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}
