package filter

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/tun/tuntest"
)

// hundredRules is a 100-rule policy whose last rule lets home reach the
// office on UDP; the 99 before it allow other hosts and ports.
func hundredRules() *wire.Filter {
	f := &wire.Filter{Version: 1}
	for i := range 99 {
		f.Rules = append(f.Rules, wire.FilterRule{
			Rule:  fmt.Sprintf("rule %d", i),
			Src:   []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 88, 10, byte(i)}), 32)},
			Dst:   []netip.Prefix{netip.MustParsePrefix("100.88.2.0/24")},
			Proto: wire.ProtoTCP,
			Ports: []wire.PortRange{{First: uint16(1000 + i), Last: uint16(1000 + i)}},
		})
	}
	f.Rules = append(f.Rules, wire.FilterRule{Rule: "home", Src: pfx("100.88.1.0/24"), Dst: pfx("100.88.2.0/24"), Proto: wire.ProtoUDP})
	return f
}

// BenchmarkCheck is the filter's cost a packet: no policy (the TUN's one
// atomic load), a tracked flow under 100 rules, and a new flow's rule
// check (each packet from another port; the table evicts as it fills).
func BenchmarkCheck(b *testing.B) {
	pkt := udp(home4, office4, 40000, 4000)
	b.Run("no-policy", func(b *testing.B) {
		f := New(Options{})
		dev := &tuntest.Batch{Packets: [][]byte{pkt}}
		tt := NewTUN(dev, f, true)
		bufs, sizes := [][]byte{make([]byte, offset+1500)}, []int{0}
		for b.Loop() {
			tt.Read(bufs, sizes, offset)
		}
	})
	b.Run("tracked-100-rules", func(b *testing.B) {
		f := New(Options{})
		if err := f.Set(hundredRules()); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if !f.Check(Outbound, pkt) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("new-flow-100-rules", func(b *testing.B) {
		f := New(Options{})
		if err := f.Set(hundredRules()); err != nil {
			b.Fatal(err)
		}
		pkts := make([][]byte, 4096)
		for i := range pkts {
			pkts[i] = udp(home4, office4, uint16(10000+i), 4000)
		}
		i := 0
		for b.Loop() {
			f.Check(Outbound, pkts[i%len(pkts)])
			i++
		}
	})
}

// A full table holds DefaultMaxFlows flows in bounded memory.
func TestTableMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a full table")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, _ := newFilter(t, officePolicy(1), Options{})
	for i := range DefaultMaxFlows + DefaultMaxFlows/4 {
		a := netip.AddrFrom4([4]byte{100, 88, 3, byte(i)})
		f.Check(Inbound, udp(lab1, a, uint16(i>>8), 53))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := f.Status().Flows
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d flows in %.1f MB (%d bytes a flow)", n, float64(used)/1e6, used/int64(max(n, 1)))
	if n > DefaultMaxFlows || n < DefaultMaxFlows*9/10 {
		t.Errorf("%d flows tracked, want nearly %d and no more", n, DefaultMaxFlows)
	}
	if used > 24<<20 {
		t.Errorf("a full table takes %d MB", used>>20)
	}
	runtime.KeepAlive(f)
}
