package tun

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/underlay"
)

// routeLab is a namespace with a LAN interface (eth0, 192.168.10.2/24 and
// 2001:db8:10::2/64, default routes through it) and a stand-in for the TUN
// (mesh0 with the overlay addresses): each one end of a veth pair, whose
// other end is up too, so both have carrier.
func routeLab(t *testing.T) {
	t.Helper()
	testenv.EnterNetns(t)
	for name, addrs := range map[string][]string{
		"eth0":  {"192.168.10.2/24", "2001:db8:10::2/64"},
		"mesh0": {"100.88.0.2/16", "fd6d:6573:686e::2/48"},
	} {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		peer, err := netlink.LinkByName(name + "p")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(peer); err != nil {
			t.Fatal(err)
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if err := netlink.AddrAdd(link, addr(netip.MustParsePrefix(a))); err != nil {
				t.Fatalf("address %s on %s: %v", a, name, err)
			}
		}
		if err := netlink.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	eth0, _ := netlink.LinkByName("eth0")
	for _, gw := range []string{"192.168.10.1", "2001:db8:10::1"} {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatalf("default route via %s: %v", gw, err)
		}
	}
}

// via is the device the kernel sends a packet to dst through, from an
// ordinary socket or (mark) one of the node's own.
func via(dst string, mark bool) (string, error) {
	opts := &netlink.RouteGetOptions{}
	if mark {
		opts.Mark = underlay.Mark
	}
	rs, err := netlink.RouteGetWithOptions(net.ParseIP(dst), opts)
	if err != nil {
		return "", err
	}
	if len(rs) == 0 {
		return "", fmt.Errorf("no route to %s", dst)
	}
	link, err := netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return "", err
	}
	return link.Attrs().Name, nil
}

// Subnet and exit routes go through the TUN for everything but the node's
// own sockets and the bypassed LAN; emptying the set, or Close, leaves the
// host's routing as it was.
func TestRoutesTableAndRule(t *testing.T) {
	routeLab(t)
	p := netip.MustParsePrefix
	r := NewRoutes("mesh0")
	full := RouteSet{
		Via:    []netip.Prefix{p("0.0.0.0/0"), p("10.20.0.0/16"), p("::/0")},
		Bypass: []netip.Prefix{p("192.168.10.0/24"), p("2001:db8:10::/64")},
	}
	type lookup struct {
		dst  string
		mark bool
		want string
	}
	check := func(stage string, cases []lookup) {
		t.Helper()
		for _, c := range cases {
			got, err := via(c.dst, c.mark)
			if err != nil || got != c.want {
				t.Errorf("%s: route to %s (mark %v) via %q (%v), want %s", stage, c.dst, c.mark, got, err, c.want)
			}
		}
	}
	exit := []lookup{
		{"198.18.0.1", false, "mesh0"},
		{"198.18.0.1", true, "eth0"},
		{"10.20.5.5", false, "mesh0"},
		{"192.168.10.7", false, "eth0"},
		{"2001:db8:99::1", false, "mesh0"},
		{"2001:db8:99::1", true, "eth0"},
		{"2001:db8:10::7", false, "eth0"},
		{"100.88.0.9", false, "mesh0"},
	}
	direct := []lookup{
		{"198.18.0.1", false, "eth0"},
		{"10.20.5.5", false, "eth0"},
		{"2001:db8:99::1", false, "eth0"},
	}
	if err := r.Set(full); err != nil {
		t.Fatal(err)
	}
	check("exit node", exit)
	if err := r.Set(full); err != nil {
		t.Fatalf("setting the same routes again: %v", err)
	}
	check("exit node, set twice", exit)

	// Only the subnet route: the internet goes direct again.
	if err := r.Set(RouteSet{Via: []netip.Prefix{p("10.20.0.0/16")}, Bypass: full.Bypass}); err != nil {
		t.Fatal(err)
	}
	check("subnet route", []lookup{{"198.18.0.1", false, "eth0"}, {"10.20.5.5", false, "mesh0"}, {"2001:db8:99::1", false, "eth0"}})
	if rules, _ := netlink.RuleListFiltered(netlink.FAMILY_V6, &netlink.Rule{Table: RouteTable}, netlink.RT_FILTER_TABLE); len(rules) != 0 {
		t.Errorf("an IPv6 rule stays without IPv6 routes: %v", rules)
	}

	if err := r.Set(RouteSet{}); err != nil {
		t.Fatal(err)
	}
	check("nothing", direct)

	// A new run finds a crashed run's routes and replaces them.
	if err := r.Set(full); err != nil {
		t.Fatal(err)
	}
	if err := NewRoutes("mesh0").Set(RouteSet{Via: []netip.Prefix{p("10.20.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	check("after a restart", []lookup{{"198.18.0.1", false, "eth0"}, {"10.20.5.5", false, "mesh0"}})

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed", direct)
	left, err := tableRoutes()
	if err != nil || len(left) != 0 {
		t.Errorf("table %d after Close: %v, %v", RouteTable, left, err)
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if rules, _ := netlink.RuleListFiltered(family, &netlink.Rule{Table: RouteTable}, netlink.RT_FILTER_TABLE); len(rules) != 0 {
			t.Errorf("rules after Close: %v", rules)
		}
	}
}

func TestRouteSetRefusesBadPrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	for _, rs := range []RouteSet{
		{Via: []netip.Prefix{p("10.20.0.1/16")}},
		{Bypass: []netip.Prefix{{}}},
		{Via: []netip.Prefix{p("::ffff:10.0.0.0/104")}},
	} {
		if err := NewRoutes("mesh0").Set(rs); err == nil {
			t.Errorf("Set(%v) accepted", rs)
		}
	}
}
