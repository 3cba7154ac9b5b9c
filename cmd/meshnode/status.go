package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/node/localapi"
)

// addSocketFlag declares --socket with the node's default.
func addSocketFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "socket", config.DefaultNode().Socket, "the node's control socket")
}

func newStatusCmd() *cobra.Command {
	var socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME|IP]",
		Short: "Show this node and the path to every peer",
		Long: `Show this node (name, overlay addresses, key, candidates, its name in the
mesh's DNS), the access policy it enforces, and every peer: whether it is
online, the path in use (direct, relay or none), the endpoint, latency, the
path's MTU, traffic, the last WireGuard handshake, and whether the policy
lets this node reach it. With NAME (or NAME.<domain>) or an overlay address,
only that peer.

MTU is the largest packet the direct path carries to the peer in one piece,
measured with don't-fragment probes: the TUN MTU when the whole path carries
full-size tunnel packets, less behind a smaller link (packets to that peer
are then fitted to it), "-" while it is measured or over TCP. Through the
UDP relay it is 1376, what a 1500-byte link carries whole with the relay's
header.

REACH is "yes" when the access policy lets this node open connections to
the peer (on some protocol and port; always, with no policy), "no" when it
doesn't: the peer is then listed because it may reach this node. The policy
line counts the packets denied against each rule, from peers (in) and from
this host (out).

ROUTES are the subnet routes sent through the peer (it is their primary
router), each marked "(denied)" when the access policy lets this node open
no connection into it, and "exit" when it is an exit node this node may
choose ('meshnode set --exit-node'). Above the table: the routes this node advertises, which
of them are approved and primary; peers' routes it uses, or not (one inside
this host's LAN is left to the LAN); and its exit node, reachable or not
(traffic is then blocked, not sent directly).

The coordinator line names the coordinator the node is connected to and,
with several, how many it knows: when its coordinator fails it reconnects
to another within a few seconds, and established paths keep working.

A node restarted while no coordinator answers comes up from the peer map
it cached (peer_map_cache): the coordinator line then says since when it
runs from it and when the coordinator last changed that map, until the
coordinator answers and its map replaces the cached one.

--json prints a stable interface for scripts: self.name, self.addresses,
self.public_key, self.endpoints; peers[] with name, addresses, public_key,
online, path, endpoint, latency_ms, mtu, path_mtu, rx_bytes, tx_bytes,
last_handshake, reach, reached_by, routes, routes_denied, exit_node_option; policy with
active, version, rules, flows, max_flows, denied[] (rule, in, out) and
denied_no_rule; routes with advertised, serving, primary, via[] (prefix,
peer, state: routed, lan or own); exit_node with name, reachable, state
(reachable, unknown, not approved, offline, no path); coordinator with
url (the one connected to, else the last one used), connected, known (how
many coordinators of the mesh the node knows: it fails over among them) and, while the node runs from its cached peer map,
cached_map (since, updated, file); counters; and dns (as 'meshnode dns
status --json').`,
		Example: "  meshnode status\n  meshnode status desktop.mesh.internal\n  meshnode status --json | jq '.peers[] | {name, path}'",
		Args:    optionalArg("NAME|IP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := newLocalClient(socket).Status(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if st.Peers = matchPeers(st, args[0]); len(st.Peers) == 0 {
					return usageError{fmt.Errorf("no peer %q: give a peer's name (NAME or NAME.%s) or overlay address; 'meshnode status' lists them", args[0], st.DNS.Domain)}
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func printStatus(w io.Writer, st localapi.Status) error {
	coord := "connected"
	switch c := st.Coordinator.CachedMap; {
	case c != nil:
		coord = fmt.Sprintf("NOT connected; running since %s from the cached peer map of %s (%s)", c.Since, c.Updated, c.File)
	case !st.Coordinator.Connected:
		coord = "NOT connected (existing paths keep working)"
	}
	fmt.Fprintf(w, "%s  %s  on %s\n", st.Self.Name, joinAddrs(st.Self.Addresses), st.Self.Interface)
	if st.Coordinator.Known > 1 {
		coord += fmt.Sprintf("; %d coordinators known", st.Coordinator.Known)
	}
	fmt.Fprintf(w, "key %s\ncoordinator %s: %s\n", st.Self.PublicKey, st.Coordinator.URL, coord)
	fmt.Fprintln(w, dnsLine(st.DNS, st.Self.Name))
	if st.Self.NAT.Public != "" {
		fmt.Fprintf(w, "public %s, NAT mapping %s, ports %s", st.Self.NAT.Public, st.Self.NAT.Mapping, st.Self.NAT.PortAlloc)
		if f := st.Self.NAT.Filtering; f != "" {
			fmt.Fprintf(w, ", filtering %s", f)
		}
		fmt.Fprintln(w)
		if st.Self.NAT.MappingLifetime != "" {
			fmt.Fprintf(w, "idle mappings outlive %s; idle keepalive every %s\n", st.Self.NAT.MappingLifetime, st.Self.NAT.IdleKeepalive)
		}
	}
	if len(st.Self.Tags) > 0 {
		fmt.Fprintf(w, "tags %s\n", strings.Join(st.Self.Tags, " "))
	}
	if st.Self.Relay != "" {
		fmt.Fprintf(w, "relay for the mesh at %s\n", st.Self.Relay)
	}
	if st.Self.NAT.Public6 != "" {
		fmt.Fprintf(w, "public %s, NAT mapping %s\n", st.Self.NAT.Public6, st.Self.NAT.Mapping6)
	}
	printPolicy(w, st.Policy)
	printRouting(w, st)
	fmt.Fprintln(w)
	if len(st.Peers) == 0 {
		fmt.Fprintln(w, "no peers yet: run 'meshnode up' on another machine with a token")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tPATH\tENDPOINT\tLATENCY\tMTU\tRX\tTX\tHANDSHAKE\tONLINE\tREACH\tROUTES")
	for _, p := range st.Peers {
		addr := ""
		if len(p.Addresses) > 0 {
			addr = p.Addresses[0].String()
		}
		lat := "-"
		if p.Path == "direct" {
			lat = fmt.Sprintf("%.1fms", p.LatencyMs)
		}
		mtu := "-"
		if p.MTU > 0 {
			mtu = strconv.Itoa(p.MTU)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, addr, p.Path, dash(p.Endpoint), lat, mtu,
			bytesStr(p.RxBytes), bytesStr(p.TxBytes), ago(p.LastHandshake), yesNo(p.Online), yesNo(p.Reach), peerRoutes(p))
	}
	return tw.Flush()
}

// printRouting is what the node routes: as a router (the routes it
// advertises, those approved, those it is primary for), through its peers,
// and its exit node, which says when traffic is blocked.
func printRouting(w io.Writer, st localapi.Status) {
	r := st.Routes
	if len(r.Advertised) > 0 {
		fmt.Fprintf(w, "advertises %s; approved: %s; primary for: %s\n", joinAddrs(r.Advertised), listOrNone(r.Serving), listOrNone(r.Primary))
	}
	if r.GatewayError != "" {
		fmt.Fprintf(w, "NOT forwarding to the approved routes: %s\n", r.GatewayError)
	}
	for _, v := range r.Via {
		switch v.State {
		case localapi.RouteLAN:
			fmt.Fprintf(w, "route %s via %s: not used, this host's LAN %s keeps it\n", v.Prefix, v.Peer, v.LAN)
		case localapi.RouteOwn:
			fmt.Fprintf(w, "route %s via %s: not used, this node serves it too\n", v.Prefix, v.Peer)
		default:
			fmt.Fprintf(w, "route %s via %s\n", v.Prefix, v.Peer)
		}
	}
	if r.OSError != "" {
		fmt.Fprintf(w, "routes NOT set up: %s\n", r.OSError)
	}
	if x := st.ExitNode; x != nil {
		lan := "LANs through it too"
		if x.AllowLAN {
			lan = "LANs direct"
		}
		if x.Reachable {
			fmt.Fprintf(w, "exit node %s: reachable; internet traffic goes through it (%s)\n", x.Name, lan)
		} else {
			fmt.Fprintf(w, "exit node %s: UNREACHABLE (%s); internet traffic is blocked, not sent directly\n", x.Name, x.State)
		}
	}
}

// peerRoutes is the ROUTES column: the subnets sent through the peer,
// marked "(denied)" where the policy lets this node reach nothing, and
// "exit" for an exit node this node may choose.
func peerRoutes(p localapi.Peer) string {
	routes := make([]string, len(p.Routes))
	for i, r := range p.Routes {
		routes[i] = r.String()
		if slices.Contains(p.RoutesDenied, r) {
			routes[i] += "(denied)"
		}
	}
	s := strings.Join(routes, " ")
	if p.ExitNodeOption {
		s = strings.TrimSpace(s + " exit")
	}
	return dash(s)
}

func listOrNone[T fmt.Stringer](a []T) string {
	if len(a) == 0 {
		return "none"
	}
	return joinAddrs(a)
}

// matchPeers are the peers named by arg: a name, the name in the mesh's
// domain, an overlay address or a key.
func matchPeers(st localapi.Status, arg string) []localapi.Peer {
	name := strings.TrimSuffix(strings.ToLower(arg), ".")
	if st.DNS.Domain != "" {
		name = strings.TrimSuffix(name, "."+st.DNS.Domain)
	}
	var out []localapi.Peer
	for _, p := range st.Peers {
		match := strings.EqualFold(p.Name, name) || p.PublicKey == arg
		for _, a := range p.Addresses {
			match = match || a.String() == arg
		}
		if match {
			out = append(out, p)
		}
	}
	return out
}

// printPolicy shows the access policy in force and what it denied.
func printPolicy(w io.Writer, p localapi.Policy) {
	if !p.Active {
		fmt.Fprintln(w, "access policy: none, every member reaches every other")
		return
	}
	fmt.Fprintf(w, "access policy version %d: %d rules, %d of %d flows tracked\n", p.Version, p.Rules, p.Flows, p.MaxFlows)
	for _, d := range p.Denied {
		if d.In+d.Out > 0 {
			fmt.Fprintf(w, "  denied against %q: %d in, %d out\n", d.Rule, d.In, d.Out)
		}
	}
	if d := p.DeniedNoRule; d.In+d.Out > 0 {
		fmt.Fprintf(w, "  denied, no rule covering the addresses: %d in, %d out\n", d.In, d.Out)
	}
}

func joinAddrs[T fmt.Stringer](a []T) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func bytesStr(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ago(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
