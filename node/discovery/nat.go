package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// maxSequentialStep is the largest port delta still read as a sequential
// allocator: busy NATs hand ports to other hosts between our two queries,
// so the observed step may exceed the allocator's.
const maxSequentialStep = 16

// Mapping is the outcome of the RFC 5780 §4.3 mapping test.
type Mapping struct {
	Behaviour wire.NATMapping
	PortAlloc wire.PortAllocation
	PortStep  int
	// Public is the mapping the primary server saw.
	Public netip.AddrPort
	// Probes are the mappings seen by each server queried, in order.
	Probes []netip.AddrPort
	// Other is the server's OTHER-ADDRESS (RFC 5780 §7.4), when it has one
	// that can serve the tests.
	Other netip.AddrPort
	// Server is the STUN server that answered.
	Server Target
}

// NATInfo is what peers learn of m, through the coordinator.
func (m Mapping) NATInfo() wire.NATInfo {
	return wire.NATInfo{Mapping: m.Behaviour, PortAlloc: m.PortAlloc, PortStep: m.PortStep}
}

// ClassifyMapping runs the RFC 5780 §4.3 mapping test against a server with
// an alternate address: the primary, then the alternate IP with the primary
// port, then the alternate IP and port. local is our socket's port, to tell
// a port-preserving NAT.
//
// The other addresses are the same server's, so they get primary's
// credentials.
func (p *Prober) ClassifyMapping(ctx context.Context, primary Target, local uint16, locals []netip.Addr) (Mapping, error) {
	r1, err := p.Query(ctx, primary, 0)
	if err != nil {
		return Mapping{Behaviour: wire.MappingUnknown, PortAlloc: wire.PortAllocUnknown}, err
	}
	m := Mapping{Public: r1.Mapped, Probes: []netip.AddrPort{r1.Mapped}, Behaviour: wire.MappingUnknown, PortAlloc: wire.PortAllocUnknown}
	for _, a := range locals {
		if a == r1.Mapped.Addr() && local == r1.Mapped.Port() {
			m.Behaviour, m.PortAlloc = wire.MappingNone, wire.PortAllocPreserve
			// Without a NAT a firewall may still filter: the
			// filtering test needs the other address.
			if checkOther(primary.Addr, r1.Other) == nil {
				m.Other = r1.Other
			}
			return m, nil
		}
	}
	if r1.Mapped.Port() == local {
		m.PortAlloc = wire.PortAllocPreserve
	}
	if !r1.Other.IsValid() {
		return m, nil // the server has no alternate address: behaviour unknown
	}
	if err := checkOther(primary.Addr, r1.Other); err != nil {
		return m, err
	}
	m.Other = r1.Other
	r2, err := p.Query(ctx, Target{Addr: netip.AddrPortFrom(r1.Other.Addr(), primary.Addr.Port()), Auth: primary.Auth}, 0)
	if err != nil {
		return m, err
	}
	m.Probes = append(m.Probes, r2.Mapped)
	if r2.Mapped == r1.Mapped {
		m.Behaviour = wire.MappingEndpointIndependent
		return m, nil
	}
	r3, err := p.Query(ctx, Target{Addr: r1.Other, Auth: primary.Auth}, 0)
	if err != nil {
		return m, err
	}
	m.Probes = append(m.Probes, r3.Mapped)
	if r3.Mapped == r2.Mapped {
		m.Behaviour = wire.MappingAddressDependent
	} else {
		m.Behaviour = wire.MappingAddressPortDependent
	}
	if m.PortAlloc != wire.PortAllocPreserve {
		m.PortAlloc, m.PortStep = portPattern(m.Probes)
	}
	return m, nil
}

// errBadOther means a server's OTHER-ADDRESS can't serve the RFC 5780
// tests, which then report the NAT's behaviour as unknown.
var errBadOther = errors.New("the STUN server's OTHER-ADDRESS is not its other IP and port")

// checkOther checks that other, a server's OTHER-ADDRESS, differs from the
// server in both IP and port, as RFC 5780 §6.1 Table 1 has it (Ca:Cp). A
// server that names its own IP there (meshnode's did, when asked at its
// alternate address) would send the mapping test's "other" queries back to
// itself and pass a symmetric NAT off as endpoint-independent.
func checkOther(server, other netip.AddrPort) error {
	switch {
	case !other.Addr().IsValid() || other.Addr().IsUnspecified() || other.Port() == 0:
		return fmt.Errorf("%w: %s named %s", errBadOther, server, other)
	case other.Addr() == server.Addr():
		return fmt.Errorf("%w: %s named %s, on its own IP", errBadOther, server, other)
	case other.Port() == server.Port():
		return fmt.Errorf("%w: %s named %s, on its own port", errBadOther, server, other)
	}
	return nil
}

// portPattern reads the allocator from the ports of successive new mappings.
func portPattern(probes []netip.AddrPort) (wire.PortAllocation, int) {
	step := 0
	for i := 1; i < len(probes); i++ {
		if probes[i].Port() == probes[i-1].Port() {
			continue // a mapping reused, as with address-dependent mapping
		}
		d := int(probes[i].Port()) - int(probes[i-1].Port())
		if d <= 0 || d > maxSequentialStep {
			return wire.PortAllocRandom, 0
		}
		if step == 0 || d < step {
			step = d
		}
	}
	if step == 0 {
		return wire.PortAllocUnknown, 0
	}
	return wire.PortAllocSequential, step
}

// filterTimeout bounds each filtering probe: a filtered answer never comes,
// so every dropped probe costs this long.
const filterTimeout = 2 * time.Second
