package natlab

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Mapping is a NAT's mapping behaviour (RFC 4787 §4.1): which outbound flows
// from one inside endpoint share one external address and port.
type Mapping int

const (
	// EndpointIndependent reuses one external port for every destination
	// (RFC 4787 REQ-1; every "cone" NAT).
	EndpointIndependent Mapping = iota
	// AddressDependent reuses the external port only towards the same
	// destination IP.
	AddressDependent
	// AddressAndPortDependent gives every destination IP and port its own
	// external port (the "symmetric" NAT).
	AddressAndPortDependent
)

func (m Mapping) String() string {
	switch m {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("Mapping(%d)", int(m))
}

// Filtering is a NAT's filtering behaviour (RFC 4787 §5): which remote
// endpoints may send in through an existing mapping.
type Filtering int

const (
	// EndpointIndependentFiltering lets anyone in once a mapping exists
	// (full cone).
	EndpointIndependentFiltering Filtering = iota
	// AddressDependentFiltering lets in only IPs the mapping has sent to
	// (restricted cone).
	AddressDependentFiltering
	// AddressAndPortDependentFiltering lets in only IP:port pairs the
	// mapping has sent to (port-restricted cone, symmetric).
	AddressAndPortDependentFiltering
)

func (f Filtering) String() string {
	switch f {
	case EndpointIndependentFiltering:
		return "endpoint-independent"
	case AddressDependentFiltering:
		return "address-dependent"
	case AddressAndPortDependentFiltering:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("Filtering(%d)", int(f))
}

// PortAlloc is how a NAT picks the external port of a new mapping
// (RFC 4787 §4.2).
type PortAlloc int

const (
	// PortPreserve keeps the inside port when it is free (Linux MASQUERADE),
	// else takes the next free port above it.
	PortPreserve PortAlloc = iota
	// PortSequential hands out ports in steps of NATConfig.PortStep, the
	// pattern port prediction exploits.
	PortSequential
	// PortRandom picks a random free port (RFC 6056), defeating prediction.
	PortRandom
)

func (a PortAlloc) String() string {
	switch a {
	case PortPreserve:
		return "preserve"
	case PortSequential:
		return "sequential"
	case PortRandom:
		return "random"
	}
	return fmt.Sprintf("PortAlloc(%d)", int(a))
}

// DefaultIdleTimeout is the mapping idle timeout when NATConfig.IdleTimeout
// is 0: Linux conntrack drops an unreplied UDP entry after 30 s
// (nf_conntrack_udp_timeout), and measured home gateways go as low.
const DefaultIdleTimeout = 30 * time.Second

// External ports a NAT allocates from: Linux MASQUERADE maps unprivileged
// source ports into 1024-65535.
const (
	natFirstPort = 1024
	natLastPort  = 65535
	natPortSpan  = natLastPort - natFirstPort + 1
)

// NATConfig describes one NAT. The zero value plus a Name is a full-cone NAT
// on the internet with an automatic public address; see FullCone,
// RestrictedCone, PortRestrictedCone and Symmetric for the classic types.
type NATConfig struct {
	Name     string
	PublicIP netip.Addr // on the upstream network; invalid (zero) picks a free one
	Upstream *NAT       // nil: on the internet; else behind that NAT (double NAT, CGNAT)

	Mapping   Mapping
	Filtering Filtering
	PortAlloc PortAlloc
	PortStep  int // for PortSequential; 0 means 1

	// IdleTimeout removes a mapping after this long without a packet in
	// either direction; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Hairpin lets inside hosts reach each other through their public
	// mappings, with the source translated (RFC 4787 §6, REQ-9).
	Hairpin bool
	// BlockUDP drops every outbound packet, like a network that blocks UDP.
	BlockUDP bool
	// TrackUnsolicited keeps an inbound packet that no mapping accepts in
	// the NAT's own stack and tracks it, as Linux masquerade does on a
	// router with no WAN input filter (conntrack confirms the packet at
	// local input). The tracked pair (the sender, the public port) is then
	// taken: an inside host's first packet to that sender can't leave
	// through that port and gets another one, for that destination only,
	// and the sender's later packets to the old port stay with the NAT
	// (each refreshes the pair, which expires after IdleTimeout). Linux also
	// gives the inside host's later new flows the moved one's port; the
	// emulator keeps them on the mapping they had.
	TrackUnsolicited bool
	// UplinkHops counts the routers between the NAT's public side and its
	// upstream network (the ISP's access routers). Each forwards a packet
	// only with TTL left (RFC 1812 §5.3.1): a low-TTL packet that left this
	// NAT dies before anyone else sees it.
	UplinkHops int
	// Seed makes PortRandom and the PortSequential start repeatable; 0
	// derives it from Name, so a lab is deterministic unless a test varies it.
	Seed uint64
}

// FullCone is endpoint-independent mapping and filtering, ports preserved.
func FullCone() NATConfig {
	return NATConfig{Mapping: EndpointIndependent, Filtering: EndpointIndependentFiltering}
}

// RestrictedCone is endpoint-independent mapping with address-dependent
// filtering, ports preserved.
func RestrictedCone() NATConfig {
	return NATConfig{Mapping: EndpointIndependent, Filtering: AddressDependentFiltering}
}

// PortRestrictedCone is endpoint-independent mapping with
// address-and-port-dependent filtering, ports preserved: a default Linux
// MASQUERADE router.
func PortRestrictedCone() NATConfig {
	return NATConfig{Mapping: EndpointIndependent, Filtering: AddressAndPortDependentFiltering}
}

// Symmetric is address-and-port-dependent mapping and filtering with random
// ports: the "hard" NAT that defeats port prediction. Set PortAlloc to
// PortSequential for the predictable kind.
func Symmetric() NATConfig {
	return NATConfig{
		Mapping:   AddressAndPortDependent,
		Filtering: AddressAndPortDependentFiltering,
		PortAlloc: PortRandom,
	}
}

// EarlyRemap is a port-restricted cone with TrackUnsolicited: Linux
// masquerade on a router with no WAN input filter, which gives a flow
// another port when its destination's packet arrived first.
func EarlyRemap() NATConfig {
	c := PortRestrictedCone()
	c.TrackUnsolicited = true
	return c
}

// maxUplinkHops bounds UplinkHops: past the largest TTL, more hops only
// drop everything.
const maxUplinkHops = maxTTL

// validate checks the fields that do not depend on the lab's state.
func (c NATConfig) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New(`bad Name "": name the NAT, the packet log and errors use it`))
	}
	if c.Mapping < EndpointIndependent || c.Mapping > AddressAndPortDependent {
		errs = append(errs, fmt.Errorf("bad Mapping %d: use EndpointIndependent, AddressDependent or AddressAndPortDependent", int(c.Mapping)))
	}
	if c.Filtering < EndpointIndependentFiltering || c.Filtering > AddressAndPortDependentFiltering {
		errs = append(errs, fmt.Errorf("bad Filtering %d: use EndpointIndependentFiltering, AddressDependentFiltering or AddressAndPortDependentFiltering", int(c.Filtering)))
	}
	if c.PortAlloc < PortPreserve || c.PortAlloc > PortRandom {
		errs = append(errs, fmt.Errorf("bad PortAlloc %d: use PortPreserve, PortSequential or PortRandom", int(c.PortAlloc)))
	}
	if c.PortStep < 0 || c.PortStep >= natPortSpan {
		errs = append(errs, fmt.Errorf("bad PortStep %d: use 1..%d, or 0 for 1", c.PortStep, natPortSpan-1))
	} else if c.PortStep != 0 && c.PortAlloc != PortSequential {
		errs = append(errs, fmt.Errorf("bad PortStep %d: it only applies to PortSequential, not %v; leave it 0", c.PortStep, c.PortAlloc))
	}
	if c.UplinkHops < 0 || c.UplinkHops > maxUplinkHops {
		errs = append(errs, fmt.Errorf("bad UplinkHops %d: use 0..%d", c.UplinkHops, maxUplinkHops))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("bad IdleTimeout %v: use a positive duration, or 0 for %v", c.IdleTimeout, DefaultIdleTimeout))
	}
	if c.PublicIP.IsValid() && !usableIP(c.PublicIP) {
		errs = append(errs, fmt.Errorf("bad PublicIP %v: use a unicast address, or leave it zero to pick one", c.PublicIP))
	}
	return errors.Join(errs...)
}

// usableIP reports whether ip can be a host or NAT address in the lab.
func usableIP(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() && ip.Zone() == ""
}

// validLoss reports whether p is a probability.
func validLoss(p float64) bool {
	return !math.IsNaN(p) && p >= 0 && p <= 1
}
