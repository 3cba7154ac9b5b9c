package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

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

// Servers are the STUN servers of each address family, each family's
// tried in order until one answers.
type Servers struct {
	V4, V6 []Target
}

// Result is one gathering.
type Result struct {
	Endpoints []wire.Endpoint
	// Mapping is what IPv4 STUN found: the NAT peers choose hard-NAT
	// techniques by. Mapping6 is IPv6's, where there is usually no NAT
	// (the mapped address is one of ours).
	Mapping  Mapping
	Mapping6 Mapping
	// STUNErr is set when no STUN server answered in any family tried (UDP
	// blocked, or the coordinator's STUN port unreachable).
	STUNErr error
}

// maxLocal bounds the interface candidates: the coordinator refuses more
// than wire.MaxEndpoints, and a STUN mapping per family and a port
// mapping need room. Addresses sort IPv4 first, so a host with many IPv6
// addresses loses some of those.
const maxLocal = wire.MaxEndpoints - 3

// earlyGrace is how long one address family's STUN result waits for the
// other's before it is reported alone: one STUN retransmission timeout, well
// above the round trip of a server that answers.
const earlyGrace = stunRTO

// Gather lists the interface candidates (private addresses as LAN, public
// ones as public) and, for each address family the host has an address
// in, learns the public mapping through the first of that family's STUN
// servers that answers. The families are probed at once. When one is done
// earlyGrace before the other, early hears the result so far, with the other family's
// part from prev (the last gathering): a blackholed IPv6 must not hold back
// IPv4's candidates, nor the other way round. port is the shared socket's.
func (g *Gatherer) Gather(ctx context.Context, servers Servers, port uint16, prev Result, early func(Result)) Result {
	locals := g.locals()
	has4 := slices.ContainsFunc(locals, netip.Addr.Is4)
	has6 := slices.ContainsFunc(locals, netip.Addr.Is6)
	type probe struct {
		v6  bool
		m   Mapping
		err error
	}
	done := make(chan probe, 2)
	run := func(v6 bool, targets []Target) {
		m, err := g.probe(ctx, targets, port, locals)
		done <- probe{v6, m, err}
	}
	pending := 0
	// With no addresses known at all (interfaces unreadable), IPv4 is
	// still worth a try.
	if has4 || len(locals) == 0 {
		pending++
		go run(false, servers.V4)
	}
	if has6 {
		pending++
		go run(true, servers.V6)
	}
	res := Result{Mapping: prev.Mapping, Mapping6: prev.Mapping6}
	if !has4 && len(locals) > 0 {
		res.Mapping = Mapping{}
	}
	if !has6 {
		res.Mapping6 = Mapping{}
	}
	var errs []error
	answered := false
	take := func(p probe) {
		if p.v6 {
			res.Mapping6 = p.m
		} else {
			res.Mapping = p.m
		}
		if p.m.Public.IsValid() {
			answered = true
		} else {
			errs = append(errs, p.err)
		}
		res.Endpoints = endpoints(locals, port, res.Mapping, res.Mapping6)
	}
	for i := range pending {
		if i == 0 || early == nil {
			take(<-done)
			continue
		}
		// One family is in; the other gets earlyGrace before the result
		// so far is reported.
		t := time.NewTimer(earlyGrace)
		select {
		case p := <-done:
			t.Stop()
			take(p)
		case <-t.C:
			early(res)
			take(<-done)
		}
	}
	if !answered {
		res.STUNErr = errors.Join(errs...)
	}
	return res
}

// probe learns one family's mapping through the first of servers that
// answers; an invalid Public means none did.
func (g *Gatherer) probe(ctx context.Context, servers []Target, port uint16, locals []netip.Addr) (Mapping, error) {
	err := ErrNoResponse
	for _, s := range servers {
		m, e := g.Prober.ClassifyMapping(ctx, s, port, locals)
		if m.Public.IsValid() {
			m.Server = s
			return m, nil
		}
		err = e
	}
	return Mapping{}, err
}

// endpoints lists the candidates of a gathering: the interface addresses,
// then each family's STUN mapping where there is a NAT (with none, the
// mapping is an interface address already listed).
func endpoints(locals []netip.Addr, port uint16, mappings ...Mapping) []wire.Endpoint {
	var eps []wire.Endpoint
	for _, a := range locals[:min(len(locals), maxLocal)] {
		kind := wire.EndpointLAN
		if wire.PublicAddr(a) {
			kind = wire.EndpointPublic
		}
		eps = append(eps, wire.Endpoint{Addr: netip.AddrPortFrom(a, port), Kind: kind})
	}
	for _, m := range mappings {
		if m.Public.IsValid() && m.Behaviour != wire.MappingNone {
			eps = append(eps, wire.Endpoint{Addr: m.Public, Kind: wire.EndpointSTUN})
		}
	}
	return eps
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
