package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Flow is one conntrack entry of a router: its original and reply
// (source, destination) tuples. The reply's destination is the mapping
// the router gave the flow.
type Flow struct{ Orig, Reply [2]netip.AddrPort }

// Flows lists the router's UDP conntrack entries.
func (r *Router) Flows(ctx context.Context) ([]Flow, error) {
	out, err := r.Conntrack(ctx)
	if err != nil {
		return nil, err
	}
	return parseFlows(out)
}

// parseFlows reads `conntrack -L` lines: the first src/dst/sport/dport are
// the original tuple, the second the reply.
func parseFlows(out string) ([]Flow, error) {
	var fs []Flow
	for line := range strings.Lines(out) {
		v := make(map[string][]string)
		for _, f := range strings.Fields(line) {
			if k, val, ok := strings.Cut(f, "="); ok {
				v[k] = append(v[k], val)
			}
		}
		if len(v["src"]) != 2 || len(v["sport"]) != 2 || len(v["dst"]) != 2 || len(v["dport"]) != 2 {
			continue
		}
		var f Flow
		for i, t := range []*[2]netip.AddrPort{&f.Orig, &f.Reply} {
			for j, k := range [][2]string{{"src", "sport"}, {"dst", "dport"}} {
				ip, err := netip.ParseAddr(v[k[0]][i])
				if err != nil {
					return nil, fmt.Errorf("conntrack line %q: %w", strings.TrimSpace(line), err)
				}
				port, err := strconv.ParseUint(v[k[1]][i], 10, 16)
				if err != nil {
					return nil, fmt.Errorf("conntrack line %q: %w", strings.TrimSpace(line), err)
				}
				t[j] = netip.AddrPortFrom(ip, uint16(port))
			}
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// holdTable is the table HoldOutbound adds beside the router's own.
const holdTable = "meshlab_hold"

// HoldOutbound drops what the router would forward from its LAN to dst
// until release: a host whose packets don't get out for a while (a laptop
// asleep, a flapping Wi-Fi link) while the far side keeps sending. The
// router's own ruleset is untouched.
func (r *Router) HoldOutbound(ctx context.Context, dst netip.AddrPort) (release func(context.Context) error, err error) {
	rules := fmt.Sprintf("table ip %s {\n\tchain forward {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n\t\tiifname %q ip daddr %s udp dport %d drop\n\t}\n}\n",
		holdTable, lanIf, dst.Addr(), dst.Port())
	if _, err := r.NS.ExecInput(ctx, rules, r.NS.lab.tools.NFT, "-f", "-"); err != nil {
		return nil, fmt.Errorf("hold traffic to %s in %s: %w", dst, r.NS.Name, err)
	}
	return func(ctx context.Context) error {
		if _, err := r.NS.Exec(ctx, r.NS.lab.tools.NFT, "delete", "table", "ip", holdTable); err != nil {
			return fmt.Errorf("release traffic to %s in %s: %w", dst, r.NS.Name, err)
		}
		return nil
	}, nil
}
