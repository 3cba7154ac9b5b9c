package natlab

import (
	"fmt"
	"testing"
)

// TestMappingAndFiltering checks every RFC 4787 mapping x filtering pair:
// which probes share an external mapping (§4.1) and which remotes get in (§5).
func TestMappingAndFiltering(t *testing.T) {
	type want struct{ sameIPOtherPort, otherIP bool }
	mappings := map[Mapping]want{ // does the mapping equal the first one?
		EndpointIndependent:     {sameIPOtherPort: true, otherIP: true},
		AddressDependent:        {sameIPOtherPort: true, otherIP: false},
		AddressAndPortDependent: {sameIPOtherPort: false, otherIP: false},
	}
	filters := map[Filtering]want{ // is the probe let in?
		EndpointIndependentFiltering:     {sameIPOtherPort: true, otherIP: true},
		AddressDependentFiltering:        {sameIPOtherPort: true, otherIP: false},
		AddressAndPortDependentFiltering: {sameIPOtherPort: false, otherIP: false},
	}
	for m, wantMap := range mappings {
		for f, wantFilter := range filters {
			t.Run(fmt.Sprintf("%v/%v", m, f), func(t *testing.T) {
				l, _ := newLab(t)
				s1 := l.NewHost("s1", ip("198.18.0.10"))
				s2 := l.NewHost("s2", ip("198.18.0.20"))
				s1a, s1b, s2a := listen(t, s1, 3478), listen(t, s1, 3479), listen(t, s2, 3478)
				nat := mustNAT(t, l, NATConfig{Name: "nat", Mapping: m, Filtering: f})
				a := listen(t, nat.NewHost("a"), 5000)

				first := observe(t, a, s1a)
				if got := observe(t, a, s1b) == first; got != wantMap.sameIPOtherPort {
					t.Errorf("same IP, other port: mapping equal = %v, want %v", got, wantMap.sameIPOtherPort)
				}
				if got := observe(t, a, s2a) == first; got != wantMap.otherIP {
					t.Errorf("other IP: mapping equal = %v, want %v", got, wantMap.otherIP)
				}

				// Filtering: one fresh mapping that has only sent to s1a.
				nat.Flush()
				ext := observe(t, a, s1a)
				probes := []struct {
					name string
					from *Conn
					want bool
				}{
					{"same remote", s1a, true},
					{"same IP, other port", s1b, wantFilter.sameIPOtherPort},
					{"other IP", s2a, wantFilter.otherIP},
				}
				for _, p := range probes {
					before := nat.Stats().DroppedFiltered
					send(t, p.from, ext, "in")
					got := len(drain(t, a)) == 1
					if got != p.want {
						t.Errorf("%s %v -> %v: let in = %v, want %v", p.name, p.from.LocalAddrPort(), ext, got, p.want)
					}
					if dropped := nat.Stats().DroppedFiltered - before; dropped != map[bool]uint64{true: 0, false: 1}[p.want] {
						t.Errorf("%s: DroppedFiltered grew by %d", p.name, dropped)
					}
				}
			})
		}
	}
}

// TestHolePunching punches between two NATs the way meshnode does: learn
// each public mapping from a STUN server, then both send to the other's
// mapping, replying to whatever source they see, for a few rounds.
func TestHolePunching(t *testing.T) {
	tests := []struct {
		name         string
		a, b         NATConfig
		firstDropped bool // a's first packet is dropped by b's filter
		want         bool
	}{
		{"port-restricted both", PortRestrictedCone(), PortRestrictedCone(), true, true},
		{"restricted both", RestrictedCone(), RestrictedCone(), true, true},
		{"full cone both", FullCone(), FullCone(), false, true},
		{"symmetric vs full cone", Symmetric(), FullCone(), false, true},
		{"symmetric vs restricted cone", Symmetric(), RestrictedCone(), true, true},
		{"symmetric vs port-restricted", Symmetric(), PortRestrictedCone(), true, false},
		{"symmetric both", Symmetric(), Symmetric(), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLab(t)
			stun := listen(t, l.NewHost("stun"), 3478)
			natA := mustNAT(t, l, named(tt.a, "nat-a"))
			natB := mustNAT(t, l, named(tt.b, "nat-b"))
			a := listen(t, natA.NewHost("a"), 41641)
			b := listen(t, natB.NewHost("b"), 41641)
			toB, toA := observe(t, b, stun), observe(t, a, stun)

			send(t, a, toB, "punch")
			if got := b.Queued() == 0; got != tt.firstDropped {
				t.Errorf("a's first packet dropped = %v, want %v", got, tt.firstDropped)
			}
			if got := natB.Stats().DroppedFiltered == 1; got != tt.firstDropped {
				t.Errorf("nat-b DroppedFiltered = %d after a's first packet", natB.Stats().DroppedFiltered)
			}
			var aGot, bGot bool
			for round := range 3 {
				if round > 0 {
					send(t, a, toB, "punch")
				}
				for _, src := range drain(t, b) {
					bGot, toA = true, src
				}
				send(t, b, toA, "punch")
				for _, src := range drain(t, a) {
					aGot, toB = true, src
				}
			}
			if aGot != tt.want || bGot != tt.want {
				t.Errorf("a received = %v, b received = %v, want both %v", aGot, bGot, tt.want)
			}
		})
	}
}

// TestPortAllocation checks the external ports of consecutive mappings from
// one inside socket to different destinations (a symmetric NAT).
func TestPortAllocation(t *testing.T) {
	const insidePort = 41820
	tests := []struct {
		name  string
		alloc PortAlloc
		step  int
		check func(ports []int) error
	}{
		{"preserve", PortPreserve, 0, func(ports []int) error {
			if ports[0] != insidePort {
				return fmt.Errorf("first port %d, want the inside port %d", ports[0], insidePort)
			}
			return nil
		}},
		{"sequential step 1", PortSequential, 0, stepsOf(1)},
		{"sequential step 7", PortSequential, 7, stepsOf(7)},
		{"random", PortRandom, 0, func(ports []int) error {
			if stepsOf(ports[1]-ports[0])(ports) == nil {
				return fmt.Errorf("ports %v follow a constant step", ports)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLab(t)
			server := l.NewHost("server")
			nat := mustNAT(t, l, NATConfig{Name: "nat", Mapping: AddressAndPortDependent, PortAlloc: tt.alloc, PortStep: tt.step})
			a := listen(t, nat.NewHost("a"), insidePort)
			var ports []int
			for i := range 6 {
				ext := observe(t, a, listen(t, server, uint16(3478+i)))
				ports = append(ports, int(ext.Port()))
			}
			if err := tt.check(ports); err != nil {
				t.Error(err)
			}
		})
	}
}

// stepsOf checks that ports advance by step, wrapping within the NAT's range.
func stepsOf(step int) func([]int) error {
	return func(ports []int) error {
		for i := 1; i < len(ports); i++ {
			if d := (ports[i] - ports[i-1] + natPortSpan) % natPortSpan; d != step {
				return fmt.Errorf("ports %v: step %d at %d, want %d", ports, d, i, step)
			}
		}
		return nil
	}
}

// TestPortPreserveCollision gives the second inside host with the same port
// another external port: the first one keeps it.
func TestPortPreserveCollision(t *testing.T) {
	l, _ := newLab(t)
	server := listen(t, l.NewHost("server"), 3478)
	nat := mustNAT(t, l, named(PortRestrictedCone(), "nat"))
	first := observe(t, listen(t, nat.NewHost("a"), 41820), server)
	second := observe(t, listen(t, nat.NewHost("b"), 41820), server)
	if first.Port() != 41820 || second.Port() == 41820 {
		t.Errorf("mappings %v and %v: want the first to keep port 41820 and the second to get another", first, second)
	}
}

// TestSeededRandomPorts checks PortRandom repeats with a seed and varies
// across seeds.
func TestSeededRandomPorts(t *testing.T) {
	ports := func(seed uint64) []uint16 {
		l, _ := newLab(t)
		server := listen(t, l.NewHost("server"), 3478)
		nat := mustNAT(t, l, NATConfig{Name: "nat", PortAlloc: PortRandom, Seed: seed})
		var got []uint16
		for i := range 4 {
			a := listen(t, nat.NewHost(fmt.Sprintf("a%d", i)), 5000)
			got = append(got, observe(t, a, server).Port())
		}
		return got
	}
	one, again, other := ports(1), ports(1), ports(2)
	if fmt.Sprint(one) != fmt.Sprint(again) {
		t.Errorf("seed 1 gave %v then %v", one, again)
	}
	if fmt.Sprint(one) == fmt.Sprint(other) {
		t.Errorf("seeds 1 and 2 both gave %v", one)
	}
}
