package wire

// NATMapping is a NAT's mapping behaviour in RFC 4787 §4.1 terms, as the
// RFC 5780 §4.3 mapping test finds it. The string values are a wire format
// (NATInfo, the coordinator's store, status and netcheck JSON): never
// change them.
type NATMapping string

// NAT mapping behaviours.
const (
	// MappingNone is no NAT: the mapped address is the node's own.
	MappingNone                 NATMapping = "none"
	MappingEndpointIndependent  NATMapping = "endpoint-independent"
	MappingAddressDependent     NATMapping = "address-dependent"
	MappingAddressPortDependent NATMapping = "address-and-port-dependent"
	// MappingUnknown: the test was incomplete, or the STUN server has no
	// alternate address (RFC 5780 OTHER-ADDRESS).
	MappingUnknown NATMapping = "unknown"
)

// Known reports whether m is one of the Mapping constants.
func (m NATMapping) Known() bool {
	switch m {
	case MappingNone, MappingEndpointIndependent, MappingAddressDependent, MappingAddressPortDependent, MappingUnknown:
		return true
	}
	return false
}

// endpointDependent reports a mapping that changes with the destination
// (RFC 4787 §4.1: "symmetric"): a peer can't reuse the address STUN saw.
func (m NATMapping) endpointDependent() bool {
	return m == MappingAddressDependent || m == MappingAddressPortDependent
}

// NATFiltering is a NAT's or firewall's filtering behaviour in RFC 4787 §5
// terms, as the RFC 5780 §4.4 filtering test finds it. Peers don't need it
// (hole punching opens any filter); the administrator's node table shows
// it. The string values are a wire format, as NATMapping's.
type NATFiltering string

// NAT filtering behaviours, named as the mapping behaviours they mirror.
const (
	FilteringNone                 NATFiltering = "none" // nothing filters unsolicited packets
	FilteringEndpointIndependent  NATFiltering = "endpoint-independent"
	FilteringAddressDependent     NATFiltering = "address-dependent"
	FilteringAddressPortDependent NATFiltering = "address-and-port-dependent"
	FilteringUnknown              NATFiltering = "unknown"
)

// Known reports whether f is one of the Filtering constants or empty (not
// measured: nodes before filtering was reported, or still measuring).
func (f NATFiltering) Known() bool {
	switch f {
	case "", FilteringNone, FilteringEndpointIndependent, FilteringAddressDependent, FilteringAddressPortDependent, FilteringUnknown:
		return true
	}
	return false
}

// PortAllocation is how a NAT picks the external port of a new mapping
// (RFC 4787 §4.2.1). The string values are a wire format, as NATMapping's.
type PortAllocation string

// Port allocation patterns.
const (
	// PortAllocPreserve keeps the internal port (RFC 4787 §4.2.1 port
	// preservation).
	PortAllocPreserve PortAllocation = "preserve"
	// PortAllocSequential hands out ports in small steps: NATInfo.PortStep.
	PortAllocSequential PortAllocation = "sequential"
	PortAllocRandom     PortAllocation = "random"
	PortAllocUnknown    PortAllocation = "unknown"
)

// Known reports whether a is one of the PortAlloc constants.
func (a PortAllocation) Known() bool {
	switch a {
	case PortAllocPreserve, PortAllocSequential, PortAllocRandom, PortAllocUnknown:
		return true
	}
	return false
}

// Easy reports no NAT or an endpoint-independent mapping: the address STUN
// saw is the one every peer reaches, so it is the target of the other side
// of the birthday technique.
func (n NATInfo) Easy() bool {
	return n.Mapping == MappingNone || n.Mapping == MappingEndpointIndependent
}

// Hard reports an endpoint-dependent mapping whose ports can't be
// predicted (anything but sequential allocation): only the birthday
// technique, many sockets against many probes, may meet it directly.
func (n NATInfo) Hard() bool {
	return n.Mapping.endpointDependent() && n.PortAlloc != PortAllocSequential
}

// Predictable reports an endpoint-dependent mapping with sequential ports
// and a known step: its mapping towards a new peer likely sits a few steps
// past the one STUN saw.
func (n NATInfo) Predictable() bool {
	return n.Mapping.endpointDependent() && n.PortAlloc == PortAllocSequential && n.PortStep > 0
}
