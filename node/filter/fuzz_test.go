package filter

import (
	"testing"

	"github.com/meshnode/meshnode/internal/packet/packettest"
)

// FuzzCheck: hostile packets, either way, never panic the filter; with no
// policy every packet passes, and a packet the policy denies is counted.
func FuzzCheck(f *testing.F) {
	first, later := fragments(lab1, dns4, 5353, 53, 9)
	web := tcp(home4, office4, 40000, 443, syn)
	for _, seed := range [][]byte{
		web, tcp(office4, home4, 443, 40000, synAck), udp(lab1, dns4, 5353, 53), first, later,
		packettest.Echo(ip(home6, office6), false, 4),
		packettest.ICMP(ip(office4, home4), 3, 3, nil, web[:28]),
		{0x45}, {0x60, 0, 0, 0, 0, 0, 44},
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, inbound bool) {
		dir := Outbound
		if inbound {
			dir = Inbound
		}
		open, _ := newFilter(t, nil, Options{})
		if !open.Check(dir, pkt) {
			t.Fatal("denied with no policy")
		}
		ff, _ := newFilter(t, officePolicy(1), Options{MaxFlows: numShards})
		ff.Check(Inbound, web) // something tracked to relate to
		before := ff.Stats.DeniedIn.Load() + ff.Stats.DeniedOut.Load() + ff.Stats.Malformed.Load() + ff.Stats.Fragments.Load()
		passed := ff.Check(dir, pkt)
		after := ff.Stats.DeniedIn.Load() + ff.Stats.DeniedOut.Load() + ff.Stats.Malformed.Load() + ff.Stats.Fragments.Load()
		if passed == (after == before+1) || after > before+1 {
			t.Fatalf("passes = %v, counted %d drops", passed, after-before)
		}
	})
}
