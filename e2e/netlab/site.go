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

// CoordinatorAddrs are the coordinator host's two addresses (RFC 5780 needs
// a second IP for the alternate STUN address).
func CoordinatorAddrs() (primary, alternate netip.Addr) {
	return netip.AddrFrom4([4]byte{198, 18, 0, 1}), netip.AddrFrom4([4]byte{198, 18, 0, 2})
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
	NS   *Netns
	Addr netip.Addr // its address on eth0
}

// AddSite builds a network of the given kind.
func (l *Lab) AddSite(ctx context.Context, cfg SiteConfig) (*Site, error) {
	if cfg.Hosts == 0 {
		cfg.Hosts = 1
	}
	if cfg.Hosts < 0 || cfg.Hosts > maxHosts {
		return nil, fmt.Errorf("site: %d hosts; use 1-%d", cfg.Hosts, maxHosts)
	}
	if cfg.NodePort == 0 {
		cfg.NodePort = DefaultNodePort
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
			if err := l.ConnectInternet(ctx, h.NS, "eth0", netip.PrefixFrom(addr, internetBits)); err != nil {
				return err
			}
		}
		return nil
	case FullCone, PortRestricted, EarlyRemap, Symmetric, UDPBlocked:
		mode := map[Kind]natMode{FullCone: modeStatic, PortRestricted: modeMasquerade, EarlyRemap: modeOpenInput, Symmetric: modeRandom, UDPBlocked: modeNoUDP}[cfg.Kind]
		r, err := s.newRouter(ctx, l, "r", mode, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, i, 0, 1}), 24))
		if err != nil {
			return err
		}
		r.onInternet = true
		s.Router = r
		if err := l.ConnectInternet(ctx, r.NS, wanIf, wan); err != nil {
			return err
		}
		r.wan = wan
		return s.finish(ctx, l, cfg, r)
	case DoubleNAT:
		cgn, err := s.newRouter(ctx, l, "cgn", modeMasquerade, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, i, 1}), 24))
		if err != nil {
			return err
		}
		cgn.onInternet = true
		s.Router = cgn
		if err := l.ConnectInternet(ctx, cgn.NS, wanIf, wan); err != nil {
			return err
		}
		cgn.wan = wan
		home, err := s.newRouter(ctx, l, "r", modeMasquerade, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, i, 1}), 24))
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
		lan := r.lan.Addr().As4()
		lan[3] = byte(2 + k)
		h.Addr = netip.AddrFrom4(lan)
		port := fmt.Sprintf("h%d", k+1)
		if err := r.NS.IP(ctx,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", port, h.NS.Name),
			fmt.Sprintf("link set %s master %s", port, lanIf),
			fmt.Sprintf("link set %s up", port),
		); err != nil {
			return err
		}
		if err := h.NS.noIPv6("eth0"); err != nil {
			return err
		}
		if err := configure(ctx, h.NS, "eth0", []netip.Prefix{netip.PrefixFrom(h.Addr, r.lan.Bits())}, r.LAN()); err != nil {
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

// newRouter creates a router namespace with its LAN bridge.
func (s *Site) newRouter(ctx context.Context, l *Lab, role string, mode natMode, lan netip.Prefix) (*Router, error) {
	n, err := l.NewNetns(ctx, fmt.Sprintf("s%d%s", s.Index, role))
	if err != nil {
		return nil, err
	}
	s.nss = append(s.nss, n)
	if err := l.routerSysctls(n, true); err != nil {
		return nil, err
	}
	if err := n.IP(ctx, fmt.Sprintf("link add %s type bridge stp_state 0 forward_delay 0", lanIf)); err != nil {
		return nil, err
	}
	if err := configure(ctx, n, lanIf, []netip.Prefix{lan}, netip.Addr{}); err != nil {
		return nil, err
	}
	return &Router{NS: n, mode: mode, lan: lan}, nil
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
