package routes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshnode/meshnode/internal/wire"
)

// nftTable is the nftables table a router node owns (family inet, both IP
// versions): its forward gate and its masquerade. It is replaced whole on
// every change and deleted on exit.
const nftTable = "meshnode"

// gatewayRules is the nftables script that makes the table hold exactly
// the rules for serving routes through the TUN device dev:
//
//   - forward: from dev, only to the routes served (wire.Node.Routes), and
//     never back into dev. WireGuard checks a packet's source against its
//     peer's addresses, not its destination: without this gate any member
//     could send through the router to anything the router reaches.
//   - postrouting: traffic from dev to elsewhere is masqueraded, so LAN
//     hosts and the internet answer the router, not overlay addresses they
//     have no route to; with snat off, only exit traffic is (the LAN
//     routes the overlay back to this router itself).
//
// The node's packet filter sees each packet before the kernel forwards it,
// so it judges the original addresses.
func gatewayRules(dev string, serving []netip.Prefix, snat bool) string {
	var v4, v6, lan4, lan6 []string
	exit := false
	for _, p := range serving {
		exit = exit || wire.IsExitRoute(p)
		switch {
		case p.Addr().Is4():
			v4 = append(v4, p.String())
			if !wire.IsExitRoute(p) {
				lan4 = append(lan4, p.String())
			}
		default:
			v6 = append(v6, p.String())
			if !wire.IsExitRoute(p) {
				lan6 = append(lan6, p.String())
			}
		}
	}
	var b strings.Builder
	// Creating the table first makes the delete succeed on a host that
	// has none; the whole script is one transaction.
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", nftTable, nftTable, nftTable)
	set := func(name, typ string, elems []string) {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s; flags interval; auto-merge;\n", name, typ)
		if len(elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
		}
		b.WriteString("\t}\n")
	}
	set("serve4", "ipv4_addr", v4)
	set("serve6", "ipv6_addr", v6)
	set("lan4", "ipv4_addr", lan4)
	set("lan6", "ipv6_addr", lan6)
	q := quote(dev)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname %s oifname %s drop\n", q, q)
	fmt.Fprintf(&b, "\t\tiifname %s ip daddr @serve4 accept\n", q)
	fmt.Fprintf(&b, "\t\tiifname %s ip6 daddr @serve6 accept\n", q)
	fmt.Fprintf(&b, "\t\tiifname %s drop\n\t}\n", q)
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	switch {
	case snat:
		fmt.Fprintf(&b, "\t\tiifname %s oifname != %s masquerade\n", q, q)
	case exit:
		fmt.Fprintf(&b, "\t\tiifname %s oifname != %s ip daddr != @lan4 masquerade\n", q, q)
		fmt.Fprintf(&b, "\t\tiifname %s oifname != %s ip6 daddr != @lan6 masquerade\n", q, q)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// quote is an interface name as an nftables string. Names are checked as
// the kernel's (tun.validateName): no whitespace, no quotes to escape.
func quote(name string) string { return `"` + name + `"` }

// families says which IP versions serving holds.
func families(serving []netip.Prefix) (v4, v6 bool) {
	return slices.ContainsFunc(serving, func(p netip.Prefix) bool { return p.Addr().Is4() }),
		slices.ContainsFunc(serving, func(p netip.Prefix) bool { return p.Addr().Is6() })
}
