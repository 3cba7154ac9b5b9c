package discovery

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

func TestMappingNATInfo(t *testing.T) {
	public := netip.MustParseAddrPort("198.18.0.7:41820")
	for _, tc := range []struct {
		name string
		m    Mapping
		want wire.NATInfo
	}{
		{"no answer", Mapping{}, wire.NATInfo{}},
		{"no NAT", Mapping{Behaviour: wire.MappingNone, PortAlloc: wire.PortAllocPreserve, Public: public},
			wire.NATInfo{Mapping: wire.MappingNone, PortAlloc: wire.PortAllocPreserve}},
		{"sequential symmetric", Mapping{Behaviour: wire.MappingAddressPortDependent, PortAlloc: wire.PortAllocSequential, PortStep: 2, Public: public, Probes: []netip.AddrPort{public}},
			wire.NATInfo{Mapping: wire.MappingAddressPortDependent, PortAlloc: wire.PortAllocSequential, PortStep: 2}},
	} {
		if got := tc.m.NATInfo(); got != tc.want {
			t.Errorf("%s: NATInfo() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
