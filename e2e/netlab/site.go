package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Address plan. The internet is 198.18.0.0/15 (RFC 2544, benchmarking);
// site i (1..maxSites) uses 198.18.i.0/24 on it and 198.19.i.1 when its
// router's address changes. LANs are 10.i.0.0/24, home LANs behind a CGN
// 192.168.i.0/24, CGN segments 100.64.i.0/24 (RFC 6598, well away from the
// overlay's 100.88.0.0/16).
const (
	internetBits = 15
	maxSites     = 250
	maxHosts     = 8
	// DefaultNodePort is the UDP port nodes listen on (config default), the
	// port a full cone maps statically.
	DefaultNodePort = 41820
)

// IPv6 plan: the internet is 2001:2::/48 (RFC 5180, benchmarking). Its
// segment 2001:2::/64 holds the internet namespace's router (::ffff), the
// coordinator (::1), site i's router (2001:2::i:1) and public hosts
// (2001:2::i:10 up); site i's LAN behind its firewall is 2001:2:0:i::/64,
// its router ::1, its hosts ::2 up. No NAT anywhere: a home router is a
// stateful firewall (RFC 6092).
const internet6Bits = 64

// internetRouter6 is the internet namespace's address on the segment: the
// IPv6 default route of everything on it.
var internetRouter6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0x02, 14: 0xff, 15: 0xff})

// CoordinatorAddrs are the coordinator host's two addresses (RFC 5780 needs
// a second IP for the alternate STUN address).
func CoordinatorAddrs() (primary, alternate netip.Addr) {
	return netip.AddrFrom4([4]byte{198, 18, 0, 1}), netip.AddrFrom4([4]byte{198, 18, 0, 2})
}

// CoordinatorAddr6 is the coordinator host's IPv6 address: its STUN server
// and relay listen there too (stun_listen_v6), and IPv6-only nodes dial it.
func CoordinatorAddr6() netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0x02, 15: 1})
}

// segment6 is host k of site i on the internet segment, 2001:2::i:k.
func segment6(site, k int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0x02, 12: byte(site >> 8), 13: byte(site), 15: byte(k)})
}

// lan6 is address k of site i's LAN prefix, 2001:2:0:i::k.
func lan6(site, k int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0x02, 6: byte(site >> 8), 7: byte(site), 15: byte(k)})
}

// NewWANAddr is the address ChangeWAN tests move site i's router to.
func NewWANAddr(site int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, byte(site), 1}) }

// SiteConfig describes one network.
type SiteConfig struct {
	Kind Kind
	// Hosts is the number of hosts (1 when zero). Behind a router they
	// share its LAN, and the router doesn't hairpin.
	Hosts int
	// UDPTimeout, when set, is every router's conntrack UDP idle timeout.
	UDPTimeout time.Duration
	// NodePort is the UDP port a full cone maps statically for the first
	// host; DefaultNodePort when zero.
	NodePort uint16
	// UplinkMTU, when set, is the MTU of a DoubleNAT home's link to its
	// carrier-grade NAT (a PPPoE line, a mobile carrier, a tunnel): both
	// routers forward over it, so a packet too big for it meets a router
	// on either side, which answers with ICMP "fragmentation needed" and
	// clamps the MSS of TCP SYNs it forwards, as PPPoE routers do.
	UplinkMTU int
	// DropTooBig makes the site's routers drop ICMP "fragmentation
	// needed", made or forwarded: a path MTU black hole.
	DropTooBig bool
	// IPv6 gives the site global IPv6 beside its IPv4: public hosts get an
	// address on the internet segment, hosts behind a router one in the
	// site's /64, which the router forwards through a stateful firewall
	// (replies and what the inside started pass; unsolicited inbound is
	// dropped) with no NAT. Kind IPv6Only implies it. DoubleNAT has none.
	IPv6 bool
}

// Uplink MTUs the lab builds: from the datagram size every IPv4 host must
// accept (RFC 791: 576) to Ethernet's.
const (
	minUplinkMTU = 576
	maxUplinkMTU = 1500
)

// validate rejects what the lab can't build.
func (cfg SiteConfig) validate() error {
	switch {
	case cfg.Hosts < 0 || cfg.Hosts > maxHosts:
		return fmt.Errorf("site: %d hosts; use 1-%d", cfg.Hosts, maxHosts)
	case cfg.UplinkMTU != 0 && cfg.Kind != DoubleNAT:
		return fmt.Errorf("site: UplinkMTU needs a router on both ends of the link: use kind %s, not %s", DoubleNAT, cfg.Kind)
	case cfg.UplinkMTU != 0 && (cfg.UplinkMTU < minUplinkMTU || cfg.UplinkMTU > maxUplinkMTU):
		return fmt.Errorf("site: UplinkMTU %d; use %d-%d", cfg.UplinkMTU, minUplinkMTU, maxUplinkMTU)
	}
	return nil
}

// Site is one network: its hosts and the routers in front of them.
type Site struct {
	Index int
	Kind  Kind
	Hosts []*Host
	// Router faces the internet; nil for Public. For DoubleNAT it is the
	// carrier-grade NAT and Inner is the home router behind it.
	Router *Router
	Inner  *Router
	nss    []*Netns
}

// Host is a namespace where a node runs.
type Host struct {
	NS    *Netns
	Addr  netip.Addr // its IPv4 address on eth0; invalid on an IPv6-only site
	Addr6 netip.Addr // its global IPv6 address on eth0, on a site with IPv6
}

// AddSite builds a network of the given kind.
func (l *Lab) AddSite(ctx context.Context, cfg SiteConfig) (*Site, error) {
	if cfg.Hosts == 0 {
		cfg.Hosts = 1
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.NodePort == 0 {
		cfg.NodePort = DefaultNodePort
	}
	if cfg.Kind == IPv6Only {
		cfg.IPv6 = true
	}
	if cfg.IPv6 && cfg.Kind == DoubleNAT {
		return nil, fmt.Errorf("site: IPv6 is not modelled behind a double NAT; use another kind")
	}
	l.mu.Lock()
	l.sites++
	i := l.sites
	l.mu.Unlock()
	if i > maxSites {
		return nil, fmt.Errorf("site %d: a lab holds at most %d sites", i, maxSites)
	}
	s := &Site{Index: i, Kind: cfg.Kind}
	if err := s.build(ctx, l, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("site %d (%s): %w", i, cfg.Kind, err), s.Close())
	}
	return s, nil
}

func (s *Site) build(ctx context.Context, l *Lab, cfg SiteConfig) error {
	i := byte(s.Index)
	wan := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, i, 1}), internetBits)
	switch cfg.Kind {
	case Public:
		for k := range cfg.Hosts {
			addr := netip.AddrFrom4([4]byte{198, 18, i, byte(10 + k)})
			h, err := s.newHost(ctx, l, k+1)
			if err != nil {
				return err
			}
			h.Addr = addr
			addrs := []netip.Prefix{netip.PrefixFrom(addr, internetBits)}
			if cfg.IPv6 {
				h.Addr6 = segment6(s.Index, 10+k)
				addrs = append(addrs, netip.PrefixFrom(h.Addr6, internet6Bits))
				if err := l.dualStackSysctls(h.NS, false); err != nil {
					return err
				}
			}
			if err := l.ConnectInternet(ctx, h.NS, "eth0", addrs...); err != nil {
				return err
			}
		}
		return nil
	case FullCone, PortRestricted, EarlyRemap, Symmetric, UDPBlocked, IPv6Only:
		mode := map[Kind]natMode{FullCone: modeStatic, PortRestricted: modeMasquerade, EarlyRemap: modeOpenInput, Symmetric: modeRandom, UDPBlocked: modeNoUDP, IPv6Only: modeNoIPv4}[cfg.Kind]
		var lan []netip.Prefix
		if cfg.Kind != IPv6Only {
			lan = append(lan, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, i, 0, 1}), 24))
		}
		if cfg.IPv6 {
			lan = append(lan, netip.PrefixFrom(lan6(s.Index, 1), internet6Bits))
		}
		r, err := s.newRouter(ctx, l, "r", mode, cfg.IPv6, lan...)
		if err != nil {
			return err
		}
		r.onInternet = true
		s.Router = r
		var wans []netip.Prefix
		if cfg.Kind != IPv6Only {
			r.wan = wan
			wans = append(wans, wan)
		}
		if cfg.IPv6 {
			r.wan6 = segment6(s.Index, 1)
			wans = append(wans, netip.PrefixFrom(r.wan6, internet6Bits))
		}
		if err := l.ConnectInternet(ctx, r.NS, wanIf, wans...); err != nil {
			return err
		}
		r.wan = wan
		r.link.dropTooBig = cfg.DropTooBig
		if cfg.IPv6 {
			if err := l.routeSite6(ctx, r.lan6.Masked(), r.wan6); err != nil {
				return err
			}
		}
		return s.finish(ctx, l, cfg, r)
	case DoubleNAT:
		cgn, err := s.newRouter(ctx, l, "cgn", modeMasquerade, false, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, i, 1}), 24))
		if err != nil {
			return err
		}
		cgn.onInternet = true
		s.Router = cgn
		if err := l.ConnectInternet(ctx, cgn.NS, wanIf, wan); err != nil {
			return err
		}
		cgn.wan = wan
		home, err := s.newRouter(ctx, l, "r", modeMasquerade, false, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, i, 1}), 24))
		if err != nil {
			return err
		}
		s.Inner = home
		home.wan = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, i, 2}), 24)
		if err := cgn.NS.IP(ctx,
			fmt.Sprintf("link add h1 type veth peer name %s netns %s", wanIf, home.NS.Name),
			fmt.Sprintf("link set h1 master %s", lanIf),
			"link set h1 up",
		); err != nil {
			return err
		}
		if err := configure(ctx, home.NS, wanIf, []netip.Prefix{home.wan}, cgn.LAN()); err != nil {
			return err
		}
		if cfg.UplinkMTU != 0 {
			mtu := cfg.UplinkMTU
			if err := errors.Join(
				cgn.NS.IP(ctx, fmt.Sprintf("link set h1 mtu %d", mtu), fmt.Sprintf("link set %s mtu %d", lanIf, mtu)),
				home.NS.IP(ctx, fmt.Sprintf("link set %s mtu %d", wanIf, mtu)),
			); err != nil {
				return fmt.Errorf("uplink MTU %d: %w", mtu, err)
			}
			cgn.link.clampMSS, home.link.clampMSS = true, true
		}
		cgn.link.dropTooBig, home.link.dropTooBig = cfg.DropTooBig, cfg.DropTooBig
		if err := cgn.start(ctx, cfg.UDPTimeout); err != nil {
			return err
		}
		return s.finish(ctx, l, cfg, home)
	}
	return fmt.Errorf("unknown kind %q; use one of %v", cfg.Kind, Kinds())
}

// finish puts the hosts on r's LAN and starts r's NAT.
func (s *Site) finish(ctx context.Context, l *Lab, cfg SiteConfig, r *Router) error {
	for k := range cfg.Hosts {
		h, err := s.newHost(ctx, l, k+1)
		if err != nil {
			return err
		}
		var addrs []netip.Prefix
		var gws []netip.Addr
		if r.lan.IsValid() {
			lan := r.lan.Addr().As4()
			lan[3] = byte(2 + k)
			h.Addr = netip.AddrFrom4(lan)
			addrs, gws = append(addrs, netip.PrefixFrom(h.Addr, r.lan.Bits())), append(gws, r.LAN())
		}
		if r.lan6.IsValid() {
			h.Addr6 = lan6(s.Index, 2+k)
			addrs, gws = append(addrs, netip.PrefixFrom(h.Addr6, r.lan6.Bits())), append(gws, r.lan6.Addr())
			if err := l.dualStackSysctls(h.NS, false); err != nil {
				return err
			}
		}
		port := fmt.Sprintf("h%d", k+1)
		if err := r.NS.IP(ctx,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", port, h.NS.Name),
			fmt.Sprintf("link set %s master %s", port, lanIf),
			fmt.Sprintf("link set %s up", port),
		); err != nil {
			return err
		}
		if !r.lan6.IsValid() {
			if err := h.NS.noIPv6("eth0"); err != nil {
				return err
			}
		}
		if err := configure(ctx, h.NS, "eth0", addrs, gws...); err != nil {
			return err
		}
	}
	if r.mode == modeStatic {
		r.static = netip.AddrPortFrom(s.Hosts[0].Addr, cfg.NodePort)
	}
	return r.start(ctx, cfg.UDPTimeout)
}

// newHost creates host k's namespace.
func (s *Site) newHost(ctx context.Context, l *Lab, k int) (*Host, error) {
	n, err := l.NewNetns(ctx, fmt.Sprintf("s%dh%d", s.Index, k))
	if err != nil {
		return nil, err
	}
	s.nss = append(s.nss, n)
	h := &Host{NS: n}
	s.Hosts = append(s.Hosts, h)
	return h, nil
}

// newRouter creates a router namespace with its LAN bridge, which carries
// lan: an IPv4 prefix for its NAT and, with v6, an IPv6 one for its
// firewall.
func (s *Site) newRouter(ctx context.Context, l *Lab, role string, mode natMode, v6 bool, lan ...netip.Prefix) (*Router, error) {
	n, err := l.NewNetns(ctx, fmt.Sprintf("s%d%s", s.Index, role))
	if err != nil {
		return nil, err
	}
	s.nss = append(s.nss, n)
	sysctls := l.routerSysctls
	if v6 {
		sysctls = l.dualStackSysctls
	}
	if err := sysctls(n, true); err != nil {
		return nil, err
	}
	if err := n.IP(ctx, fmt.Sprintf("link add %s type bridge stp_state 0 forward_delay 0", lanIf)); err != nil {
		return nil, err
	}
	if err := configure(ctx, n, lanIf, lan); err != nil {
		return nil, err
	}
	r := &Router{NS: n, mode: mode}
	for _, p := range lan {
		if p.Addr().Is6() {
			r.lan6 = p
		} else {
			r.lan = p
		}
	}
	return r, nil
}

// start loads the router's rules, then its timeouts: the conntrack sysctls
// only exist once NAT rules have loaded the conntrack module.
func (r *Router) start(ctx context.Context, udpTimeout time.Duration) error {
	if err := r.apply(ctx); err != nil {
		return err
	}
	if udpTimeout > 0 {
		return r.SetUDPTimeout(udpTimeout)
	}
	return nil
}

// Routers lists the site's routers, the one on the internet first.
func (s *Site) Routers() []*Router {
	var rs []*Router
	for _, r := range []*Router{s.Router, s.Inner} {
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// Close removes the site's namespaces (and the processes in them).
func (s *Site) Close() error {
	var errs []error
	for i := len(s.nss) - 1; i >= 0; i-- {
		errs = append(errs, s.nss[i].Close())
	}
	return errors.Join(errs...)
}
