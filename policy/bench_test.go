package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchNodes is a mesh of size nodes, in groups of 100 by tag (g0, g1,
// ...), with addresses of their own.
func benchNodes(size int) []Node {
	nodes := make([]Node, size)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("n%d", i), Tags: []string{fmt.Sprintf("g%d", i/100)}, Addrs: []netip.Addr{
			netip.AddrFrom4([4]byte{100, 88, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x6d, 0x65, 0x73, 0x68, 0x6e, 14: byte(i >> 8), 15: byte(i)})}}
	}
	return nodes
}

// groupsPolicy lets each group of benchNodes reach itself.
func groupsPolicy(b *testing.B, groups int) *Policy {
	var s strings.Builder
	s.WriteString("rules:\n")
	for g := range groups {
		fmt.Fprintf(&s, "  - from: tag:g%d\n    to: tag:g%d\n", g, g)
	}
	p, err := Parse("p.yaml", []byte(s.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkResolve: what the coordinator computes when the policy is
// set, for meshes of 100 and 1000 nodes under the worked example's
// policy.
func BenchmarkResolve(b *testing.B) {
	p, err := Parse("p.yaml", readExample(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{100, 1000} {
		nodes := benchNodes(size)
		for i := range nodes {
			nodes[i].Tags = []string{[]string{"home", "office"}[i%2]}
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

// BenchmarkJoin: what the coordinator computes when a node joins a mesh
// under a policy of groups of 100: the whole policy resolved again
// (full, as it did), or the join alone (Update).
func BenchmarkJoin(b *testing.B) {
	for _, size := range []int{1000, 5000} {
		nodes := benchNodes(size + 1)
		p := groupsPolicy(b, size/100)
		r, err := Resolve(p, 1, nodes[:size], testNet)
		if err != nil {
			b.Fatal(err)
		}
		joiner := nodes[size]
		joiner.Tags = []string{"g3"}
		nodes[size] = joiner
		b.Run(fmt.Sprintf("full/nodes=%d", size), func(b *testing.B) {
			for b.Loop() {
				if _, err := Resolve(p, 1, nodes, testNet); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("update/nodes=%d", size), func(b *testing.B) {
			for b.Loop() {
				if _, err := r.Update("", &joiner); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
