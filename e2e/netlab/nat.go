package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is the kind of network a site puts its hosts in.
type Kind string

// The lab's NAT kinds, in the classic RFC 3489 names with their RFC 4787
// behaviour.
const (
	// Public: no NAT, the host sits on the internet.
	Public Kind = "public"
	// FullCone: a static 1:1 mapping of the node's UDP port (EIM, EIF).
	FullCone Kind = "fullcone"
	// PortRestricted: Linux masquerade; EIM with port preservation,
	// address-and-port-dependent filtering. The common home router.
	PortRestricted Kind = "portrestricted"
	// Symmetric: masquerade with a random port per flow (EDM, random
	// allocation, APDF). Enterprise firewalls, some CGNs.
	Symmetric Kind = "symmetric"
	// DoubleNAT: a home router (masquerade) behind a carrier-grade NAT
	// (masquerade) on 100.64.0.0/10 (RFC 6598).
	DoubleNAT Kind = "doublenat"
	// UDPBlocked: masquerade that drops all forwarded UDP; TCP passes.
	UDPBlocked Kind = "udpblocked"
	// IPv6Only: no IPv4 at all; global IPv6 behind a stateful firewall
	// (RFC 6092). Not in Kinds: it is no IPv4 NAT to pair in the matrix.
	IPv6Only Kind = "ipv6only"
	// EarlyRemap: Linux masquerade with no WAN input filter, as in many
	// small and DIY routers. A packet that arrives at a mapped port before
	// the inside host has sent to its source is delivered to the router's
	// own stack and tracked (conntrack confirms it at local input), and the
	// inside host's later flow to that source finds the tuple taken: the
	// NAT gives that one flow another port. It looks port-restricted to
	// STUN, and remaps when punched early.
	EarlyRemap Kind = "earlyremap"
)

// Kinds lists every IPv4 NAT kind, easiest first.
func Kinds() []Kind {
	return []Kind{Public, FullCone, PortRestricted, EarlyRemap, DoubleNAT, Symmetric, UDPBlocked}
}

// String is the kind's short name.
func (k Kind) String() string { return string(k) }

// Describe is a human description of the kind.
func (k Kind) Describe() string {
	switch k {
	case Public:
		return "no NAT (public address)"
	case FullCone:
		return "full cone (static mapping)"
	case PortRestricted:
		return "port-restricted cone (masquerade)"
	case Symmetric:
		return "symmetric (random ports)"
	case DoubleNAT:
		return "double NAT (home router behind CGN)"
	case UDPBlocked:
		return "UDP blocked (TCP only)"
	case IPv6Only:
		return "IPv6 only (stateful firewall, no IPv4)"
	case EarlyRemap:
		return "port-restricted cone, no WAN input filter (remaps when punched early)"
	}
	return string(k)
}

// natMode is what one router does.
type natMode int

const (
	modeMasquerade natMode = iota // port-restricted cone
	modeRandom                    // symmetric
	modeStatic                    // full cone for one host's UDP port
	modeNoUDP                     // masquerade, forwarded UDP dropped
	modeNoIPv4                    // no IPv4 at all (an IPv6-only site)
	modeOpenInput                 // masquerade, nothing filters what reaches the router itself
)

// Interface names inside routers.
const (
	wanIf = "wan0"
	lanIf = "lan0" // a bridge: several hosts can sit behind one router
)

// nftTable is the table the lab owns in each router namespace for IPv4,
// nftTable6 the one for IPv6.
const (
	nftTable  = "meshlab"
	nftTable6 = "meshlab6"
)

// Router is a namespace that forwards between its LAN bridge and its WAN
// veth, translating with nftables.
type Router struct {
	NS   *Netns
	mode natMode

	// onInternet: the WAN is on the lab's internet bridge (not a CGN's
	// LAN), so the router plays its ISP's first hop too (ruleset).
	onInternet bool

	mu     sync.Mutex
	wan    netip.Prefix   // the current WAN address; invalid without IPv4
	lan    netip.Prefix   // the router's address on its LAN; invalid without IPv4
	static netip.AddrPort // modeStatic: the inside host's UDP port, mapped 1:1
	fwds   []forward      // forwards added by ForwardTCP and ForwardEcho
	link   linkRules
	// With IPv6: the WAN address on the internet segment and the LAN
	// prefix the router forwards to, through a stateful firewall.
	wan6 netip.Addr
	lan6 netip.Prefix
}

// linkRules are what a router does about a link smaller than its others.
type linkRules struct {
	// clampMSS fits forwarded TCP SYNs to the MTU of the route out, as
	// every PPPoE router does: TCP through the router never needs ICMP.
	clampMSS bool
	// dropTooBig drops ICMP "fragmentation needed", made here or passing
	// through: the router is a path MTU black hole for UDP.
	dropTooBig bool
}

// WAN is the router's current public (outside) address.
func (r *Router) WAN() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wan.Addr()
}

// LAN is the router's address on its LAN.
func (r *Router) LAN() netip.Addr { return r.lan.Addr() }

// LANPrefix is the router's IPv4 LAN, e.g. 10.3.0.0/24.
func (r *Router) LANPrefix() netip.Prefix { return r.lan.Masked() }

// WAN6 is the router's IPv6 address on the internet, invalid without IPv6.
func (r *Router) WAN6() netip.Addr { return r.wan6 }

// Ruleset is the nftables ruleset the router runs now: its IPv4 NAT and
// its IPv6 firewall, each where it has that family.
func (r *Router) Ruleset() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rs string
	if r.mode != modeNoIPv4 {
		rs = ruleset(r.mode, r.wan.Addr(), r.static, r.fwds, r.link, r.onInternet)
	}
	if r.lan6.IsValid() {
		rs += ruleset6(r.mode == modeNoUDP)
	}
	return rs
}

// ruleset6 renders an IPv6 home router's firewall, as RFC 6092 recommends
// for residential gateways: no translation; what the inside started and
// its replies pass, unsolicited inbound is dropped; the ICMPv6 errors a
// path needs (RFC 4890 §4.3.1) pass. The router itself answers neighbour
// discovery and nothing else from outside. With noUDP forwarded UDP is
// dropped, as on the IPv4 side.
func ruleset6(noUDP bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip6 %s {\n", nftTable6)
	filterChains(&b, filter{
		noUDP:       noUDP,
		inputFirst:  []string{"icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"},
		forwardAlso: []string{"icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept"},
	})
	b.WriteString("}\n")
	return b.String()
}

// filter is what a router's filter chains add to conntrack's filtering.
type filter struct {
	// noUDP drops forwarded UDP.
	noUDP bool
	// openInput leaves out the input filter (modeOpenInput).
	openInput bool
	// inputFirst passes before the input filter drops; forwardFirst comes
	// before everything in the forward chain (MSS clamping, dropping
	// ICMP); forwardAlso passes what conntrack alone would not.
	inputFirst, forwardFirst, forwardAlso []string
}

// filterChains writes a router's input and forward chains. Like most home
// routers' firewalls, the input chain drops what arrives at the router
// itself from outside. Without it (f.openInput) a peer's early punch
// packet to a mapped port is delivered locally and confirmed in conntrack,
// and that entry then forces the inside host's next flow to that peer onto
// another port. The forward chain drops what it doesn't know, so the
// filtering is conntrack's: flows the inside started and their replies,
// plus f.forwardAlso.
func filterChains(b *strings.Builder, f filter) {
	if !f.openInput {
		b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
		for _, r := range f.inputFirst {
			fmt.Fprintf(b, "\t\t%s\n", r)
		}
		fmt.Fprintf(b, "\t\tiifname %q ct state established,related accept\n", wanIf)
		fmt.Fprintf(b, "\t\tiifname %q drop\n", wanIf)
		b.WriteString("\t}\n")
	}
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	for _, r := range f.forwardFirst {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	// Hosts on one LAN talk through its bridge; with br_netfilter on, that
	// bridged traffic also passes this hook.
	fmt.Fprintf(b, "\t\tiifname %q oifname %q accept\n", lanIf, lanIf)
	if f.noUDP {
		b.WriteString("\t\tmeta l4proto udp counter drop\n")
	}
	b.WriteString("\t\tct state established,related accept\n")
	for _, r := range f.forwardAlso {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	fmt.Fprintf(b, "\t\tiifname %q oifname %q accept\n", lanIf, wanIf)
	b.WriteString("\t}\n")
}

// forward is what arrives at the router's WAN address and goes on to a
// host behind it: a TCP port, or with port 0 ICMP echo requests.
type forward struct {
	port uint16
	to   netip.AddrPort
}

// rule is f's destination NAT, after the match on the WAN address.
func (f forward) rule() string {
	if f.port == 0 {
		return fmt.Sprintf("icmp type echo-request dnat to %s", f.to.Addr())
	}
	return fmt.Sprintf("tcp dport %d dnat to %s", f.port, f.to)
}

// ForwardTCP forwards TCP port on the router's WAN address to a host
// behind it, as a home router's port-forwarding setting does, and reloads
// the rules: the way in for a server that doesn't punch (make perf's
// iperf3 on the plain path through both NATs).
func (r *Router) ForwardTCP(ctx context.Context, port uint16, to netip.AddrPort) error {
	return r.addForward(ctx, forward{port: port, to: to})
}

// ForwardEcho forwards ICMP echo requests to the router's WAN address to
// host to (the router's input filter would drop them), and reloads the
// rules: make perf pings the plain path's far host through the same
// forward as its iperf3.
func (r *Router) ForwardEcho(ctx context.Context, to netip.Addr) error {
	return r.addForward(ctx, forward{to: netip.AddrPortFrom(to, 0)})
}

// addForward adds f to the router's forwards and reloads the rules.
func (r *Router) addForward(ctx context.Context, f forward) error {
	if r.mode == modeNoIPv4 || !f.to.Addr().Is4() {
		return fmt.Errorf("forward %q in %s: needs an IPv4 NAT and an IPv4 host", f.rule(), r.NS.Name)
	}
	r.mu.Lock()
	r.fwds = append(r.fwds, f)
	r.mu.Unlock()
	return r.apply(ctx)
}

// ruleset renders a router's NAT and filter rules (filterChains): the
// filtering is conntrack's, replies to flows the inside started from the
// exact address and port (APDF), plus what a static mapping and the
// forwards let in (EIF). onInternet adds the ISP's first hop in front
// of the router.
func ruleset(mode natMode, wan netip.Addr, static netip.AddrPort, fwds []forward, link linkRules, onInternet bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", nftTable)
	if onInternet {
		// The ISP's first hop. The lab's internet is one bridge, so two
		// routers would be neighbours; a real home router is at least one
		// router hop from any other. That hop drops what arrives with its
		// TTL spent (RFC 1812 §5.3.1), so a low-TTL packet that passed the
		// sender's own NAT dies before the far NAT, as on the internet.
		// Priority raw runs before conntrack: the packet leaves no entry.
		b.WriteString("\tchain isp {\n\t\ttype filter hook prerouting priority raw; policy accept;\n")
		fmt.Fprintf(&b, "\t\tiifname %q ip ttl 0-1 counter drop\n", wanIf)
		b.WriteString("\t}\n")
	}
	b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	switch mode {
	case modeStatic:
		fmt.Fprintf(&b, "\t\toifname %q ip saddr %s udp sport %d snat to %s:%d\n", wanIf, static.Addr(), static.Port(), wan, static.Port())
		fmt.Fprintf(&b, "\t\toifname %q masquerade\n", wanIf)
	case modeRandom:
		fmt.Fprintf(&b, "\t\toifname %q masquerade random,fully-random\n", wanIf)
	default:
		fmt.Fprintf(&b, "\t\toifname %q masquerade\n", wanIf)
	}
	b.WriteString("\t}\n")
	dnatted := mode == modeStatic || len(fwds) > 0
	if dnatted {
		b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
		if mode == modeStatic {
			fmt.Fprintf(&b, "\t\tiifname %q ip daddr %s udp dport %d dnat to %s\n", wanIf, wan, static.Port(), static)
		}
		for _, f := range fwds {
			fmt.Fprintf(&b, "\t\tiifname %q ip daddr %s %s\n", wanIf, wan, f.rule())
		}
		b.WriteString("\t}\n")
	}
	if link.dropTooBig {
		b.WriteString("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n")
		b.WriteString("\t\t" + fragNeeded + " counter drop\n")
		b.WriteString("\t}\n")
	}
	var first, dnat []string
	if link.clampMSS {
		first = append(first, "tcp flags syn tcp option maxseg size set rt mtu")
	}
	if link.dropTooBig {
		first = append(first, fragNeeded+" counter drop")
	}
	if dnatted {
		dnat = []string{"ct status dnat accept"}
	}
	filterChains(&b, filter{noUDP: mode == modeNoUDP, openInput: mode == modeOpenInput, forwardFirst: first, forwardAlso: dnat})
	b.WriteString("}\n")
	return b.String()
}

// fragNeeded matches ICMP "fragmentation needed" (RFC 792, RFC 1191).
const fragNeeded = "icmp type destination-unreachable icmp code frag-needed"

// apply atomically replaces the router's ruleset.
func (r *Router) apply(ctx context.Context) error {
	if _, err := r.NS.ExecInput(ctx, "flush ruleset\n"+r.Ruleset(), r.NS.lab.tools.NFT, "-f", "-"); err != nil {
		return fmt.Errorf("load NAT rules in %s: %w", r.NS.Name, err)
	}
	return nil
}

// FlushConntrack forgets every mapping, as a NAT that lost its state.
func (r *Router) FlushConntrack(ctx context.Context) error {
	if _, err := r.NS.Exec(ctx, r.NS.lab.tools.Conntrack, "-F"); err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", r.NS.Name, err)
	}
	return nil
}

// Conntrack lists the router's UDP mappings (for logs and assertions).
func (r *Router) Conntrack(ctx context.Context) (string, error) {
	out, err := r.NS.Exec(ctx, r.NS.lab.tools.Conntrack, "-L", "-p", "udp")
	if err != nil {
		return "", fmt.Errorf("list conntrack in %s: %w", r.NS.Name, err)
	}
	return out, nil
}

// Restart is a NAT reboot: the rules go away, then every mapping, then the
// rules come back. The second flush drops flows that passed untranslated
// while the rules were gone, which conntrack would otherwise keep
// untranslated for their whole life.
func (r *Router) Restart(ctx context.Context) error {
	if _, err := r.NS.Exec(ctx, r.NS.lab.tools.NFT, "flush", "ruleset"); err != nil {
		return fmt.Errorf("stop NAT in %s: %w", r.NS.Name, err)
	}
	return errors.Join(r.FlushConntrack(ctx), r.apply(ctx), r.FlushConntrack(ctx))
}

// ChangeWAN moves the router to a new public address, as an ISP handing out
// a new lease: masquerade picks the new address for new flows and the old
// flows are forgotten.
func (r *Router) ChangeWAN(ctx context.Context, addr netip.Addr) error {
	r.mu.Lock()
	old := r.wan
	r.wan = netip.PrefixFrom(addr, old.Bits())
	r.mu.Unlock()
	// Delete first: removing a primary address also removes its secondaries.
	err := r.NS.IP(ctx,
		fmt.Sprintf("addr del %s dev %s", old, wanIf),
		fmt.Sprintf("addr add %s dev %s", netip.PrefixFrom(addr, old.Bits()), wanIf),
	)
	if err != nil {
		return fmt.Errorf("change WAN address of %s to %s: %w", r.NS.Name, addr, err)
	}
	if r.mode == modeStatic {
		if err := r.apply(ctx); err != nil {
			return err
		}
	}
	return r.FlushConntrack(ctx)
}

// SetUDPTimeout sets conntrack's UDP idle timeouts in the router (they are
// per network namespace): unreplied and assured flows alike, as a NAT with
// a short mapping lifetime.
func (r *Router) SetUDPTimeout(d time.Duration) error {
	s := strconv.Itoa(int(d / time.Second))
	return r.NS.Sysctl(
		"net.netfilter.nf_conntrack_udp_timeout", s,
		"net.netfilter.nf_conntrack_udp_timeout_stream", s,
	)
}
