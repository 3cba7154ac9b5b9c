package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkResolve: what the coordinator computes when a node joins or
// its tags change (outside the hub's lock), for meshes of 100 and 1000
// nodes under the worked example's policy.
func BenchmarkResolve(b *testing.B) {
	p, err := Parse("p.yaml", readExample(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{100, 1000} {
		nodes := make([]Node, size)
		for i := range nodes {
			tag := []string{"home", "office"}[i%2]
			nodes[i] = Node{Name: fmt.Sprintf("n%d", i), Tags: []string{tag}, Addrs: []netip.Addr{
				netip.AddrFrom4([4]byte{100, 88, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x6d, 0x65, 0x73, 0x68, 0x6e, 14: byte(i >> 8), 15: byte(i)})}}
		}
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			for b.Loop() {
				if _, err := Resolve(p, 1, nodes, testNet); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
