package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

var testNet = Network{V4: netip.MustParsePrefix("100.88.0.0/16"), V6: netip.MustParsePrefix("fd6d:6573:686e::/48")}

// mesh is the home and office: two home machines, an office file server,
// the office router (subnet route and exit node), and an untagged phone.
func mesh() []Node {
	n := func(name string, host int, tags ...string) Node {
		return Node{Name: name, Tags: tags, Addrs: []netip.Addr{
			netip.AddrFrom4([4]byte{100, 88, 0, byte(host)}),
			netip.MustParseAddr(fmt.Sprintf("fd6d:6573:686e::%x", host)),
		}}
	}
	gw := n("gw", 4, "office")
	gw.Routes = []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24"), netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	return []Node{n("laptop", 1, "home"), n("family", 2, "home"), n("nas", 3, "office"), gw, n("phone", 5)}
}

func resolve(t testing.TB, src string, nodes []Node) *Resolved {
	t.Helper()
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(p, 7, nodes, testNet)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func addrOf(nodes []Node, name string, v6 bool) netip.Addr {
	for _, n := range nodes {
		if n.Name == name {
			if v6 {
				return n.Addrs[1]
			}
			return n.Addrs[0]
		}
	}
	panic(name)
}

// TestVerdicts: the worked example of the README.
func TestVerdicts(t *testing.T) {
	nodes := mesh()
	r := resolve(t, string(readExample(t)), nodes)
	node := func(name string) netip.Addr { return addrOf(nodes, name, false) }
	ip := netip.MustParseAddr
	tests := []struct {
		src   string
		dst   netip.Addr
		proto string
		port  uint16
		rule  string // "" for deny
	}{
		{"laptop", node("nas"), "tcp", 443, "1:"},
		{"family", node("nas"), "tcp", 445, "1:"},
		{"family", node("nas"), "tcp", 22, ""},
		{"laptop", node("nas"), "tcp", 22, "3:"},
		{"laptop", addrOf(nodes, "nas", true), "tcp", 22, "3:"},
		{"laptop", node("nas"), "udp", 443, ""},
		{"laptop", node("nas"), "icmp", 0, "4:"},
		{"phone", node("laptop"), "icmp", 0, "4:"},
		{"phone", node("nas"), "tcp", 443, ""},
		{"family", ip("192.168.10.20"), "tcp", 631, "2: home prints"},
		{"family", ip("192.168.10.20"), "tcp", 22, ""},
		{"family", ip("192.168.11.20"), "tcp", 631, ""},
		{"laptop", ip("198.18.0.10"), "tcp", 443, "5:"},
		{"laptop", ip("2001:2::10"), "udp", 53, "5:"},
		{"laptop", ip("192.168.1.1"), "tcp", 80, ""},
		{"laptop", ip("100.88.0.99"), "tcp", 80, ""},
		{"family", ip("198.18.0.10"), "tcp", 443, ""},
		{"nas", node("gw"), "udp", 5000, "6:"},
		{"nas", node("laptop"), "tcp", 22, ""},
		{"ghost", node("nas"), "icmp", 0, ""},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s to %v %s/%d", tt.src, tt.dst, tt.proto, tt.port)
		t.Run(name, func(t *testing.T) {
			v := r.Test(tt.src, tt.dst, tt.proto, tt.port)
			if v.Allow != (tt.rule != "") || !strings.HasPrefix(v.Rule, tt.rule) {
				t.Fatalf("%+v, want rule %q (empty: deny)", v, tt.rule)
			}
		})
	}
}

// TestFiltersAgreeWithVerdicts: a packet between two nodes passes both
// ends' filters exactly when Test allows it, so the filters enforce the
// policy at both ends.
func TestFiltersAgreeWithVerdicts(t *testing.T) {
	nodes := mesh()
	r := resolve(t, string(readExample(t)), nodes)
	for _, n := range nodes {
		if err := r.Filter(n.Name).Validate(); err != nil {
			t.Fatalf("filter of %s: %v", n.Name, err)
		}
	}
	for _, src := range nodes {
		for _, dst := range nodes {
			if src.Name == dst.Name {
				continue
			}
			for _, v6 := range []bool{false, true} {
				s, d := addrOf(nodes, src.Name, v6), addrOf(nodes, dst.Name, v6)
				for _, pp := range []struct {
					proto string
					port  uint16
				}{{"tcp", 22}, {"tcp", 443}, {"tcp", 9100}, {"udp", 53}, {"icmp", 0}} {
					want := r.Test(src.Name, d, pp.proto, pp.port).Allow
					out := filterAllows(r.Filter(src.Name), s, d, pp.proto, pp.port)
					in := filterAllows(r.Filter(dst.Name), s, d, pp.proto, pp.port)
					if out != want || in != want {
						t.Errorf("%s to %s %s/%d: Test %v, sender's filter %v, receiver's %v", src.Name, dst.Name, pp.proto, pp.port, want, out, in)
					}
				}
			}
		}
	}
	// Through the router: the sender's filter and the router's.
	lan := netip.MustParseAddr("192.168.10.20")
	for _, src := range []string{"laptop", "family", "phone"} {
		s := addrOf(nodes, src, false)
		want := r.Test(src, lan, "tcp", 9100).Allow
		if out, in := filterAllows(r.Filter(src), s, lan, "tcp", 9100), filterAllows(r.Filter("gw"), s, lan, "tcp", 9100); out != want || in != want {
			t.Errorf("%s to the office LAN: Test %v, sender's filter %v, router's %v", src, want, out, in)
		}
	}
	out := netip.MustParseAddr("198.18.0.10")
	if !filterAllows(r.Filter("gw"), addrOf(nodes, "laptop", false), out, "tcp", 443) {
		t.Error("the exit node's filter does not let the laptop out to the internet")
	}
	if filterAllows(r.Filter("gw"), addrOf(nodes, "laptop", false), addrOf(nodes, "gw", false), "tcp", 8080) {
		t.Error("the exit node's filter lets internet access reach the exit node itself")
	}
}

// filterAllows is a packet's fate at a filter, as the node's enforces it.
func filterAllows(f *wire.Filter, src, dst netip.Addr, proto string, port uint16) bool {
	if f.AllowAll {
		return true
	}
	in := func(ps []netip.Prefix, a netip.Addr) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	for _, r := range f.Rules {
		if !in(r.Src, src) || !in(r.Dst, dst) || (r.Proto != wire.ProtoAny && r.Proto != proto) {
			continue
		}
		if proto == wire.ProtoICMP || len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pr wire.PortRange) bool { return pr.Contains(port) }) {
			return true
		}
	}
	return false
}

func TestFilterShape(t *testing.T) {
	nodes := mesh()
	r := resolve(t, `rules:
  - name: web
    from: tag:home
    to: tag:office
    ports: [443]
`, nodes)
	laptop := r.Filter("laptop")
	if laptop.Version != 7 || laptop.AllowAll {
		t.Fatalf("filter %+v: want version 7 with rules", laptop)
	}
	// Ports without a protocol: tcp and udp, each from the laptop's own
	// addresses to the office's.
	if len(laptop.Rules) != 2 || laptop.Rules[0].Proto != "tcp" || laptop.Rules[1].Proto != "udp" {
		t.Fatalf("laptop's rules %+v: want tcp and udp", laptop.Rules)
	}
	want := "1: web [100.88.0.1/32 fd6d:6573:686e::1/128] -> [100.88.0.3/32 100.88.0.4/32 fd6d:6573:686e::3/128 fd6d:6573:686e::4/128]"
	if got := fmt.Sprintf("%s %v -> %v", laptop.Rules[0].Rule, laptop.Rules[0].Src, laptop.Rules[0].Dst); got != want {
		t.Errorf("laptop's rule\n%s\nwant\n%s", got, want)
	}
	nas := r.Filter("nas").Rules[0]
	if got := fmt.Sprintf("%v -> %v", nas.Src, nas.Dst); got != "[100.88.0.1/32 100.88.0.2/32 fd6d:6573:686e::1/128 fd6d:6573:686e::2/128] -> [100.88.0.3/32 fd6d:6573:686e::3/128]" {
		t.Errorf("nas's rule %s", got)
	}
	if f := r.Filter("phone"); len(f.Rules) != 0 || f.AllowAll {
		t.Errorf("the phone, in no rule, has filter %+v; want one that allows nothing", f)
	}
	if f := r.Filter("stranger"); len(f.Rules) != 0 || f.AllowAll {
		t.Errorf("an unknown node has filter %+v; want one that allows nothing", f)
	}
	all := resolve(t, "rules:\n  - {from: '*', to: '*'}\n", nodes).Filter("phone")
	if got := fmt.Sprintf("%v -> %v", all.Rules[0].Src, all.Rules[0].Dst); got != "[100.88.0.5/32 fd6d:6573:686e::5/128] -> [100.88.0.0/16 fd6d:6573:686e::/48]" {
		t.Errorf(`"*" compiles to %s; want the pools`, got)
	}
}

func TestVisible(t *testing.T) {
	nodes := append(mesh(), Node{Name: "exit", Addrs: []netip.Addr{netip.MustParseAddr("100.88.0.6")}, Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
	r := resolve(t, `rules:
  - {from: tag:home, to: tag:office, proto: tcp, ports: [443]}
  - {from: laptop, to: internet}
`, nodes)
	tests := []struct {
		a, b string
		want bool
	}{
		{"laptop", "nas", true},
		{"nas", "laptop", true},
		{"family", "gw", true},
		{"laptop", "exit", true}, // through its route
		{"family", "exit", false},
		{"laptop", "family", false},
		{"nas", "gw", false},
		{"phone", "laptop", false},
		{"ghost", "laptop", false},
	}
	for _, tt := range tests {
		if got := r.Visible(tt.a, tt.b); got != tt.want {
			t.Errorf("Visible(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	// A relay node tests a pair with the members' rule sets: the same
	// answer for every pair.
	for _, a := range nodes {
		for _, b := range nodes {
			if a.Name == b.Name {
				continue
			}
			ma, mb := member(t, r, a.Name), member(t, r, b.Name)
			if got, want := ma.Sees(&mb), r.Visible(a.Name, b.Name); got != want {
				t.Errorf("the relay pairs say %s and %s see each other: %v; Visible says %v", a.Name, b.Name, got, want)
			}
		}
	}
	if _, _, ok := r.Membership("ghost"); ok {
		t.Error("an unknown node has a membership")
	}
}

// member is a node's part in the rules as a relay node gets it.
func member(t *testing.T, r *Resolved, name string) wire.RelayMember {
	t.Helper()
	src, dst, ok := r.Membership(name)
	if !ok {
		t.Fatalf("no membership for %s", name)
	}
	return wire.RelayMember{Src: src, Dst: dst}
}

// A relay node's rule sets hold every rule a policy may have.
func TestRelayPairWordsHoldEveryRule(t *testing.T) {
	if MaxRules > 64*wire.MaxRelayPairWords {
		t.Errorf("MaxRules %d, but relay pairs carry %d rules", MaxRules, 64*wire.MaxRelayPairWords)
	}
}

func TestNoPolicyAllowsEverything(t *testing.T) {
	r, err := Resolve(nil, 3, mesh(), testNet)
	if err != nil {
		t.Fatal(err)
	}
	if f := r.Filter("laptop"); !f.AllowAll || f.Version != 3 || !r.Open() {
		t.Errorf("filter %+v: want allow_all at version 3", f)
	}
	if !r.Visible("laptop", "phone") || !r.Test("phone", netip.MustParseAddr("100.88.0.3"), "tcp", 22).Allow {
		t.Error("without a policy a pair is not visible or not allowed")
	}
	if (*Policy)(nil).Warnings(mesh()) != nil || (*Policy)(nil).Rules() != 0 {
		t.Error("no policy has warnings or rules")
	}
}

func TestResolveErrors(t *testing.T) {
	p, err := Parse("p.yaml", []byte("rules:\n  - from: laptop\n    to: [100.88.1.0/24, 10.0.0.0/8]\n  - from: laptop\n    to: 0.0.0.0/0\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(p, 1, mesh(), testNet)
	for _, want := range []string{`p.yaml:3:10: rule 1 to: "100.88.1.0/24" overlaps the mesh's own addresses (100.88.0.0/16)`, `p.yaml:5:9: rule 2 to: "0.0.0.0/0" overlaps`, "write internet"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v; want %q", err, want)
		}
	}
	// The rest still applies; the overlapping prefix grants nothing.
	if !r.Test("laptop", netip.MustParseAddr("10.1.2.3"), "tcp", 1).Allow || r.Test("laptop", netip.MustParseAddr("100.88.1.1"), "tcp", 1).Allow {
		t.Error("after an overlap error: want 10.0.0.0/8 allowed and the overlay not")
	}
}

// TestLargeSides: a side longer than a filter rule holds is split; a
// node whose filter would exceed the bounds gets one that allows nothing.
func TestLargeSides(t *testing.T) {
	many := func(count int) []Node {
		nodes := make([]Node, count)
		for i := range nodes {
			nodes[i] = Node{Name: fmt.Sprintf("n%d", i), Tags: []string{"fleet"}, Addrs: []netip.Addr{
				netip.AddrFrom4([4]byte{100, 88, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x6d, 0x65, 0x73, 0x68, 0x6e, 14: byte(i >> 8), 15: byte(i)})}}
		}
		return nodes
	}
	p, err := Parse("p.yaml", []byte("rules:\n  - {from: tag:fleet, to: tag:fleet, proto: tcp}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(p, 1, many(600), testNet)
	if err != nil {
		t.Fatal(err)
	}
	f := r.Filter("n0")
	if err := f.Validate(); err != nil || len(f.Rules) != 4 {
		t.Fatalf("600 nodes (1200 addresses): %d rules, %v; want each side split in two", len(f.Rules), err)
	}
	r, err = Resolve(p, 1, many(maxNodePrefixes/4+1), testNet)
	if err == nil || !strings.Contains(err.Error(), "node n0: its filter would hold") || !strings.Contains(err.Error(), "and 16335 more nodes") {
		t.Fatalf("a filter over the bounds: error %v", err)
	}
	if f := r.Filter("n0"); len(f.Rules) != 0 || f.AllowAll {
		t.Fatalf("a node over the bounds gets %d rules; want a filter that allows nothing", len(f.Rules))
	}
}

// TestInternet: the keyword covers exactly the public unicast addresses
// outside the overlay, checked against random addresses.
func TestInternet(t *testing.T) {
	set := internet(testNet)
	holes := append(slices.Clone(notInternetV4), testNet.V4)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		a := netip.AddrFrom4(b)
		want := !slices.ContainsFunc(holes, func(p netip.Prefix) bool { return p.Contains(a) })
		if got := slices.ContainsFunc(set, func(p netip.Prefix) bool { return p.Contains(a) }); got != want {
			t.Fatalf("%v: in internet %v, want %v", a, got, want)
		}
	}
	for a, want := range map[string]bool{"2001:2::1": true, "fd6d:6573:686e::1": false, "fe80::1": false, "::1": false, "ff02::1": false, "8.8.8.8": true, "198.18.0.1": true} {
		if got := slices.ContainsFunc(set, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }); got != want {
			t.Errorf("%s: in internet %v, want %v", a, got, want)
		}
	}
	global := Network{V4: netip.MustParsePrefix("44.0.0.0/16"), V6: netip.MustParsePrefix("2001:db8:1::/48")}
	for _, a := range []string{"44.0.1.1", "2001:db8:1::1"} {
		if slices.ContainsFunc(internet(global), func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("an overlay in public space: %s counts as internet", a)
		}
	}
}
