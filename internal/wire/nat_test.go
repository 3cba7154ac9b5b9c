package wire

import (
	"encoding/json"
	"testing"
)

func TestNATInfoClass(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		nat                     NATInfo
		easy, hard, predictable bool
	}{
		{"no NAT", NATInfo{Mapping: MappingNone, PortAlloc: PortAllocPreserve}, true, false, false},
		{"full cone", NATInfo{Mapping: MappingEndpointIndependent, PortAlloc: PortAllocRandom}, true, false, false},
		{"cone, sequential ports", NATInfo{Mapping: MappingEndpointIndependent, PortAlloc: PortAllocSequential, PortStep: 1}, true, false, false},
		{"symmetric, random ports", NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocRandom}, false, true, false},
		{"symmetric, preserved port", NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocPreserve}, false, true, false},
		{"symmetric, unknown ports", NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocUnknown}, false, true, false},
		{"address-dependent, random ports", NATInfo{Mapping: MappingAddressDependent, PortAlloc: PortAllocRandom}, false, true, false},
		{"symmetric, sequential ports", NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocSequential, PortStep: 2}, false, false, true},
		{"address-dependent, sequential ports", NATInfo{Mapping: MappingAddressDependent, PortAlloc: PortAllocSequential, PortStep: 1}, false, false, true},
		{"sequential without a step", NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocSequential}, false, false, false},
		{"unknown mapping", NATInfo{Mapping: MappingUnknown, PortAlloc: PortAllocRandom}, false, false, false},
		{"unknown mapping, sequential ports", NATInfo{Mapping: MappingUnknown, PortAlloc: PortAllocSequential, PortStep: 1}, false, false, false},
		{"zero", NATInfo{}, false, false, false},
	} {
		if got := tc.nat.Easy(); got != tc.easy {
			t.Errorf("%s: Easy = %v, want %v", tc.name, got, tc.easy)
		}
		if got := tc.nat.Hard(); got != tc.hard {
			t.Errorf("%s: Hard = %v, want %v", tc.name, got, tc.hard)
		}
		if got := tc.nat.Predictable(); got != tc.predictable {
			t.Errorf("%s: Predictable = %v, want %v", tc.name, got, tc.predictable)
		}
	}
}

func TestNATKnown(t *testing.T) {
	for _, tc := range []struct {
		m    NATMapping
		want bool
	}{
		{MappingNone, true},
		{MappingEndpointIndependent, true},
		{MappingAddressDependent, true},
		{MappingAddressPortDependent, true},
		{MappingUnknown, true},
		{"", false},
		{"symmetric", false},
		{"Endpoint-Independent", false},
	} {
		if got := tc.m.Known(); got != tc.want {
			t.Errorf("NATMapping(%q).Known() = %v, want %v", tc.m, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a    PortAllocation
		want bool
	}{
		{PortAllocPreserve, true},
		{PortAllocSequential, true},
		{PortAllocRandom, true},
		{PortAllocUnknown, true},
		{"", false},
		{"incremental", false},
	} {
		if got := tc.a.Known(); got != tc.want {
			t.Errorf("PortAllocation(%q).Known() = %v, want %v", tc.a, got, tc.want)
		}
	}
}

// TestNATInfoJSON pins the wire format: coordinators and nodes of other
// versions, and the coordinator's stored rows, read these strings.
func TestNATInfoJSON(t *testing.T) {
	for _, tc := range []struct {
		nat  NATInfo
		want string
	}{
		{NATInfo{Mapping: MappingNone, PortAlloc: PortAllocPreserve}, `{"mapping":"none","portalloc":"preserve"}`},
		{NATInfo{Mapping: MappingEndpointIndependent, PortAlloc: PortAllocRandom}, `{"mapping":"endpoint-independent","portalloc":"random"}`},
		{NATInfo{Mapping: MappingAddressDependent, PortAlloc: PortAllocUnknown}, `{"mapping":"address-dependent","portalloc":"unknown"}`},
		{NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocSequential, PortStep: 1}, `{"mapping":"address-and-port-dependent","portalloc":"sequential","port_step":1}`},
		{NATInfo{Mapping: MappingUnknown, PortAlloc: PortAllocUnknown}, `{"mapping":"unknown","portalloc":"unknown"}`},
	} {
		b, err := json.Marshal(tc.nat)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("Marshal(%+v) = %s, want %s", tc.nat, b, tc.want)
		}
		var back NATInfo
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back != tc.nat {
			t.Errorf("round trip of %s = %+v, want %+v", b, back, tc.nat)
		}
	}
}
