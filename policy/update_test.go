package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// randomPolicy is a policy of rules between tags, node names (some of
// nodes that never join), "*", a subnet and the internet.
func randomPolicy(rng *rand.Rand) string {
	entry := func(to bool) string {
		switch k := rng.IntN(10); {
		case k == 0:
			return `"*"`
		case k < 5:
			return fmt.Sprintf("tag:t%d", rng.IntN(4))
		case k < 8:
			return fmt.Sprintf("n%d", rng.IntN(12))
		case to && k == 8:
			return fmt.Sprintf("192.168.%d.0/24", rng.IntN(3))
		case to:
			return "internet"
		}
		return "tag:t0"
	}
	side := func(to bool) string {
		out := make([]string, 1+rng.IntN(3))
		for i := range out {
			out[i] = entry(to)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for range 1 + rng.IntN(6) {
		fmt.Fprintf(&b, "  - from: %s\n    to: %s\n", side(false), side(true))
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&b, "    ports: [%d]\n", 1+rng.IntN(1000))
		}
	}
	return b.String()
}

// randomNode is node i (its addresses are its own, as the store's pool
// gives them) with random tags and routes, under a name of a small set so
// that renames and the policy's names meet.
func randomNode(rng *rand.Rand, i int, name string) Node {
	n := Node{Name: name, Addrs: []netip.Addr{
		netip.AddrFrom4([4]byte{100, 88, byte(i >> 8), byte(i)}),
		netip.AddrFrom16([16]byte{0xfd, 0x6d, 0x65, 0x73, 0x68, 0x6e, 14: byte(i >> 8), 15: byte(i)}),
	}}
	for t := range 4 {
		if rng.IntN(3) == 0 {
			n.Tags = append(n.Tags, fmt.Sprintf("t%d", t))
		}
	}
	switch rng.IntN(6) {
	case 0:
		n.Routes = []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", rng.IntN(3)))}
	case 1:
		n.Routes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	return n
}

// sameResolved fails unless inc, a Resolved kept up by Update, says what
// a full Resolve of nodes says: each node's filter and rules, and who
// sees whom.
func sameResolved(t *testing.T, step string, inc, full *Resolved, nodes []Node) {
	t.Helper()
	if len(inc.nodes) != len(full.nodes) {
		t.Fatalf("%s: %d nodes, want %d", step, len(inc.nodes), len(full.nodes))
	}
	for _, a := range nodes {
		if !SameFilter(inc.Filter(a.Name), full.Filter(a.Name)) {
			t.Fatalf("%s: %s's filter\n%+v\nwant\n%+v", step, a.Name, inc.Filter(a.Name), full.Filter(a.Name))
		}
		is, id, _ := inc.Membership(a.Name)
		fs, fd, _ := full.Membership(a.Name)
		if !slices.Equal(is, fs) || !slices.Equal(id, fd) {
			t.Fatalf("%s: %s's rules %v %v, want %v %v", step, a.Name, is, id, fs, fd)
		}
		for _, b := range nodes {
			if inc.Visible(a.Name, b.Name) != full.Visible(a.Name, b.Name) {
				t.Fatalf("%s: %s sees %s: %v, want %v", step, a.Name, b.Name, inc.Visible(a.Name, b.Name), full.Visible(a.Name, b.Name))
			}
		}
	}
}

// TestUpdateIsResolve: a policy kept up node by node (joins, leaves,
// new tags, routes and names) says at every step what resolving it
// against every node says, over randomized seeded meshes and policies;
// and a change only changes the filters of the nodes that see the
// changed node, before or after, which is all the coordinator tells.
func TestUpdateIsResolve(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 14))
		text := randomPolicy(rng)
		p, err := Parse("p.yaml", []byte(text))
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, text)
		}
		var nodes []Node
		for i := range rng.IntN(6) {
			nodes = append(nodes, randomNode(rng, i, fmt.Sprintf("n%d", i)))
		}
		inc, err := Resolve(p, 3, nodes, testNet)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		next := len(nodes)
		for step := range 40 {
			var was string
			var now *Node
			switch k := rng.IntN(4); {
			case k == 0 && len(nodes) > 0: // leaves
				i := rng.IntN(len(nodes))
				was = nodes[i].Name
				nodes = slices.Delete(nodes, i, i+1)
			case k == 1 && len(nodes) > 0: // changes: tags, routes, maybe its name
				i := rng.IntN(len(nodes))
				was = nodes[i].Name
				name := was
				if rng.IntN(3) == 0 {
					name = fmt.Sprintf("r%d", next)
				}
				n := randomNode(rng, int(nodes[i].Addrs[0].As4()[3])|int(nodes[i].Addrs[0].As4()[2])<<8, name)
				nodes[i], now = n, &n
			default: // joins
				n := randomNode(rng, next, fmt.Sprintf("n%d", next))
				nodes = append(nodes, n)
				now = &n
			}
			next++
			prev := inc
			inc, err = prev.Update(was, now)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			full, err := Resolve(p, 3, nodes, testNet)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			label := fmt.Sprintf("seed %d step %d (was %q, now %v)\n%s", seed, step, was, now, text)
			sameResolved(t, label, inc, full, nodes)
			for _, o := range nodes {
				if now != nil && o.Name == now.Name || SameFilter(prev.Filter(o.Name), inc.Filter(o.Name)) {
					continue
				}
				if !prev.Visible(o.Name, was) && (now == nil || !inc.Visible(o.Name, now.Name)) {
					t.Fatalf("%s: %s's filter changed, but it sees the node neither before nor after", label, o.Name)
				}
			}
		}
	}
}

// TestUpdateShares: a join leaves the filters of nodes that don't see
// the new node as they were, the same values.
func TestUpdateShares(t *testing.T) {
	src := "rules:\n  - from: tag:a\n    to: tag:a\n  - from: tag:b\n    to: tag:b\n"
	nodes := []Node{randomNode(rand.New(rand.NewPCG(1, 1)), 1, "x"), randomNode(rand.New(rand.NewPCG(1, 1)), 2, "y")}
	nodes[0].Tags, nodes[1].Tags = []string{"a"}, []string{"b"}
	r := resolve(t, src, nodes)
	n := Node{Name: "z", Tags: []string{"a"}, Addrs: []netip.Addr{netip.MustParseAddr("100.88.0.9")}}
	next, err := r.Update("", &n)
	if err != nil {
		t.Fatal(err)
	}
	if next.Filter("y") != r.Filter("y") {
		t.Error("y, in another group, got a new filter")
	}
	if next.Filter("x") == r.Filter("x") || !next.Visible("x", "z") || next.Visible("y", "z") {
		t.Error("x, in z's group, kept its filter or doesn't see z")
	}
	if r.Visible("x", "z") || r.Filter("z").Rules != nil {
		t.Error("the Resolved before the join changed")
	}
}
