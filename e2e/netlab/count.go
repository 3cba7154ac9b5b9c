package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// countTable is the table Counter adds to a router; the lab's own rules
// live in nftTable and are left alone.
const countTable = "meshlab_count"

// Counter counts, at a site's router, the packets one host exchanges: sent
// to and received from the coordinator, and sent to and received from
// everyone else (its peers). It counts in the forward hook, where the
// host's own address is still on its packets (before masquerade, after
// de-NAT of replies).
type Counter struct {
	r    *Router
	host netip.Addr
}

// Counts are a Counter's packets so far.
type Counts struct {
	ToCoordinator, FromCoordinator int
	ToPeers, FromPeers             int
	// ToCoordinatorTCP is the part of ToCoordinator on TCP (the control
	// stream); the rest is UDP (STUN, the relay).
	ToCoordinatorTCP int
}

// counterNames are the named counters, in Counts' order.
var counterNames = []string{"to_coord", "from_coord", "to_peers", "from_peers", "to_coord_tcp"}

// Count starts counting host's packets at r. The counters live until the
// router's ruleset is replaced (Restart, ChangeWAN).
func (r *Router) Count(ctx context.Context, host netip.Addr) (*Counter, error) {
	a, b := CoordinatorAddrs()
	coord := fmt.Sprintf("{ %s, %s }", a, b)
	var rs strings.Builder
	fmt.Fprintf(&rs, "table ip %s {\n", countTable)
	for _, n := range counterNames {
		fmt.Fprintf(&rs, "\tcounter %s {}\n", n)
	}
	rs.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n")
	fmt.Fprintf(&rs, "\t\tip saddr %s ip daddr %s counter name to_coord\n", host, coord)
	fmt.Fprintf(&rs, "\t\tip saddr %s ip daddr %s meta l4proto tcp counter name to_coord_tcp\n", host, coord)
	fmt.Fprintf(&rs, "\t\tip daddr %s ip saddr %s counter name from_coord\n", host, coord)
	fmt.Fprintf(&rs, "\t\tip saddr %s ip daddr != %s counter name to_peers\n", host, coord)
	fmt.Fprintf(&rs, "\t\tip daddr %s ip saddr != %s counter name from_peers\n", host, coord)
	rs.WriteString("\t}\n}\n")
	if _, err := r.NS.ExecInput(ctx, rs.String(), r.NS.lab.tools.NFT, "-f", "-"); err != nil {
		return nil, fmt.Errorf("add packet counters in %s: %w", r.NS.Name, err)
	}
	return &Counter{r: r, host: host}, nil
}

// counterPackets reads "packets N" from `nft list counter`.
var counterPackets = regexp.MustCompile(`packets (\d+)`)

// Read returns the counts so far.
func (c *Counter) Read(ctx context.Context) (Counts, error) {
	var v [5]int
	for i, n := range counterNames {
		out, err := c.r.NS.Exec(ctx, c.r.NS.lab.tools.NFT, "list", "counter", "ip", countTable, n)
		if err != nil {
			return Counts{}, fmt.Errorf("read counter %s in %s: %w", n, c.r.NS.Name, err)
		}
		m := counterPackets.FindStringSubmatch(out)
		if m == nil {
			return Counts{}, fmt.Errorf("counter %s in %s: no packet count in %q", n, c.r.NS.Name, out)
		}
		v[i], _ = strconv.Atoi(m[1])
	}
	return Counts{ToCoordinator: v[0], FromCoordinator: v[1], ToPeers: v[2], FromPeers: v[3], ToCoordinatorTCP: v[4]}, nil
}
