package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRuleset(t *testing.T) {
	wan := netip.MustParseAddr("198.18.3.1")
	static := netip.MustParseAddrPort("10.3.0.2:41820")
	const ispHop = `iifname "wan0" ip ttl 0-1 counter drop`
	const inputFilter = `iifname "wan0" drop`
	for _, tc := range []struct {
		name         string
		mode         natMode
		fwds         []forward
		link         linkRules
		onInternet   bool
		want, reject []string
	}{
		{"masquerade", modeMasquerade, nil, linkRules{}, true, []string{`oifname "wan0" masquerade`, "policy drop", "ct state established,related accept", inputFilter, ispHop}, []string{"random", "dnat", "udp counter drop", "maxseg", "frag-needed"}},
		{"random", modeRandom, nil, linkRules{}, true, []string{"masquerade random,fully-random", inputFilter}, []string{"dnat"}},
		{"small link", modeMasquerade, nil, linkRules{clampMSS: true}, true, []string{"tcp flags syn tcp option maxseg size set rt mtu"}, []string{"frag-needed"}},
		{"small link, black hole", modeMasquerade, nil, linkRules{clampMSS: true, dropTooBig: true}, true, []string{"maxseg", "chain output", fragNeeded + " counter drop"}, nil},
		{"static", modeStatic, nil, linkRules{}, true, []string{
			`ip saddr 10.3.0.2 udp sport 41820 snat to 198.18.3.1:41820`,
			`ip daddr 198.18.3.1 udp dport 41820 dnat to 10.3.0.2:41820`,
			"ct status dnat accept",
		}, []string{"random"}},
		{"no UDP", modeNoUDP, nil, linkRules{}, true, []string{"meta l4proto udp counter drop", "masquerade"}, []string{"dnat"}},
		{"open input", modeOpenInput, nil, linkRules{}, true, []string{`oifname "wan0" masquerade`, "policy drop", ispHop}, []string{"chain input", inputFilter, "random"}},
		{"TCP port forward", modeMasquerade, []forward{{port: 5201, to: netip.MustParseAddrPort("10.3.0.2:5201")}}, linkRules{}, true, []string{
			`oifname "wan0" masquerade`,
			`iifname "wan0" ip daddr 198.18.3.1 tcp dport 5201 dnat to 10.3.0.2:5201`,
			"ct status dnat accept", inputFilter,
		}, []string{"udp dport", "icmp"}},
		{"TCP port and echo forward", modeMasquerade, []forward{
			{port: 5201, to: netip.MustParseAddrPort("10.3.0.2:5201")},
			{to: netip.MustParseAddrPort("10.3.0.2:0")},
		}, linkRules{}, true, []string{
			`iifname "wan0" ip daddr 198.18.3.1 tcp dport 5201 dnat to 10.3.0.2:5201`,
			`iifname "wan0" ip daddr 198.18.3.1 icmp type echo-request dnat to 10.3.0.2` + "\n",
			"ct status dnat accept", inputFilter,
		}, []string{"udp dport"}},
		{"behind a CGN", modeMasquerade, nil, linkRules{}, false, []string{`oifname "wan0" masquerade`, inputFilter}, []string{"chain isp", ispHop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRuleset(t, ruleset(tc.mode, wan, static, tc.fwds, tc.link, tc.onInternet), tc.want, tc.reject)
		})
	}
}

// checkRuleset fails t unless rs has every line of want and none of reject.
func checkRuleset(t *testing.T, rs string, want, reject []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(rs, w) {
			t.Errorf("ruleset lacks %q:\n%s", w, rs)
		}
	}
	for _, r := range reject {
		if strings.Contains(rs, r) {
			t.Errorf("ruleset has %q:\n%s", r, rs)
		}
	}
}

// TestRuleset6 checks the IPv6 firewall: no translation, inbound only what
// the inside started.
func TestRuleset6(t *testing.T) {
	for _, tc := range []struct {
		name         string
		noUDP        bool
		want, reject []string
	}{
		{"firewall", false, []string{"table ip6 meshlab6", "policy drop", "ct state established,related accept", `iifname "lan0" oifname "wan0" accept`, "packet-too-big"}, []string{"masquerade", "snat", "dnat", "udp counter drop"}},
		{"no UDP", true, []string{"meta l4proto udp counter drop"}, []string{"masquerade"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRuleset(t, ruleset6(tc.noUDP), tc.want, tc.reject) })
	}
}

// TestIPv6Firewall checks the IPv6 side of a dual-stack site and an
// IPv6-only site with plain UDP sockets: no translation (a server sees the
// host's own global address and port), replies pass, unsolicited datagrams
// don't, two firewalled hosts reach each other once both have sent (a
// punch), and an IPv6-only host has no IPv4 route.
func TestIPv6Firewall(t *testing.T) {
	l, srvNS := newTestLabWithServer(t)
	ctx := testCtx(t)
	srv := netip.AddrPortFrom(CoordinatorAddr6(), 3478).String()
	s1 := udpIn(t, srvNS, srv)
	s1port := udpIn(t, srvNS, netip.AddrPortFrom(CoordinatorAddr6(), 3479).String())
	dual, err := l.AddSite(ctx, SiteConfig{Kind: Symmetric, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dual.Close() })
	only, err := l.AddSite(ctx, SiteConfig{Kind: IPv6Only})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { only.Close() })
	a, b := dual.Hosts[0], only.Hosts[0]
	if !a.Addr.IsValid() || !a.Addr6.IsValid() || b.Addr.IsValid() || !b.Addr6.IsValid() {
		t.Fatalf("dual-stack host %v %v, IPv6-only host %v %v: want both families, then IPv6 alone", a.Addr, a.Addr6, b.Addr, b.Addr6)
	}
	ca := udpIn(t, a.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultNodePort).String())
	cb := udpIn(t, b.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultNodePort).String())

	t.Run("no translation, stateful filtering", func(t *testing.T) {
		m, err := observe(ca, s1)
		if err != nil {
			t.Fatal(err)
		}
		if want := netip.AddrPortFrom(a.Addr6, DefaultNodePort); m != want {
			t.Errorf("server saw %v, want the host's own %v", m, want)
		}
		sendUDP(t, s1port, "unsolicited", m)
		sendUDP(t, s1, "reply", m)
		expectWithout(t, ca, "reply", "unsolicited")
	})

	t.Run("punch between two firewalls", func(t *testing.T) {
		toA, toB := netip.AddrPortFrom(a.Addr6, DefaultNodePort), netip.AddrPortFrom(b.Addr6, DefaultNodePort)
		// a's first datagram dies at b's firewall; it opens a's.
		sendUDP(t, ca, "early", toB)
		sendUDP(t, cb, "from b", toA)
		expectWithout(t, ca, "from b", "")
		sendUDP(t, ca, "from a", toB)
		expectWithout(t, cb, "from a", "early")
	})

	t.Run("no IPv4 on the IPv6-only site", func(t *testing.T) {
		v4, _ := CoordinatorAddrs()
		if _, err := cb.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(v4, 3478)); err == nil {
			t.Errorf("an IPv6-only host sent to %v", v4)
		}
	})
}

// sendUDP sends msg from c to to.
func sendUDP(t *testing.T, c *net.UDPConn, msg string, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatalf("send %q to %v: %v", msg, to, err)
	}
}

// expectWithout waits for the datagram want at c and fails if the datagram
// unwanted (a filter's to drop) came too.
func expectWithout(t *testing.T, c *net.UDPConn, want, unwanted string) {
	t.Helper()
	got, err := receiveUntil(c, want)
	if err != nil {
		t.Fatalf("%q at %v: %v (got %q)", want, c.LocalAddr(), err, got)
	}
	if unwanted != "" && slices.Contains(got, unwanted) {
		t.Errorf("%q passed the firewall to %v: %q", unwanted, c.LocalAddr(), got)
	}
}

// TestNATBehaviour checks that each kind of site behaves as the RFC 4787
// class it stands for, with plain UDP sockets: mapping (does the source seen
// by two servers match) and filtering (do datagrams from others get in).
func TestNATBehaviour(t *testing.T) {
	l, srvNS := newTestLabWithServer(t)
	s1 := udpIn(t, srvNS, "198.18.0.1:3478")
	s1port := udpIn(t, srvNS, "198.18.0.1:3479")
	s2 := udpIn(t, srvNS, "198.18.0.2:3478")
	s2port := udpIn(t, srvNS, "198.18.0.2:3479")
	for _, tc := range []struct {
		kind Kind
		// wantAddr is the mapping's address: the host's, or the router's WAN.
		hostAddr bool
		// keepsPort: the mapping keeps the node's port.
		keepsPort bool
		eim, eif  bool
		udp       bool
		// remapsEarly: the unsolicited datagrams below took the mapped
		// port towards their senders, so c's flow to s2 gets another port
		// (TestEarlyRemap). Linux then hands new flows from c the newest
		// flow's mapping (nf_nat's find_appropriate_src), so s2port sees
		// that one too.
		remapsEarly bool
	}{
		{kind: Public, hostAddr: true, keepsPort: true, eim: true, eif: true, udp: true},
		{kind: FullCone, keepsPort: true, eim: true, eif: true, udp: true},
		{kind: PortRestricted, keepsPort: true, eim: true, udp: true},
		{kind: EarlyRemap, keepsPort: true, eim: true, udp: true, remapsEarly: true},
		{kind: DoubleNAT, keepsPort: true, eim: true, udp: true},
		{kind: Symmetric, udp: true},
		{kind: UDPBlocked},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			ctx := testCtx(t)
			site, err := l.AddSite(ctx, SiteConfig{Kind: tc.kind})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := site.Close(); err != nil {
					t.Errorf("close site: %v", err)
				}
			})
			host := site.Hosts[0]
			c := udpIn(t, host.NS, fmt.Sprintf("0.0.0.0:%d", DefaultNodePort))
			if !tc.udp {
				// TCP through the same router is the positive control:
				// once it crossed, the path and its neighbours are up, and
				// a datagram let through would arrive within quietWait.
				checkTCP(t, host.NS, srvNS)
				if m, err := observeEvery(c, s1, quietWait/probeTries); err == nil {
					t.Fatalf("UDP passed a UDP-blocking router (mapped to %v)", m)
				}
				return
			}
			m1, err := observe(c, s1)
			if err != nil {
				t.Fatalf("first datagram: %v", err)
			}
			wantAddr := host.Addr
			if !tc.hostAddr {
				wantAddr = site.Router.WAN()
			}
			if m1.Addr() != wantAddr {
				t.Errorf("mapping address %v, want %v", m1.Addr(), wantAddr)
			}
			if got := m1.Port() == DefaultNodePort; got != tc.keepsPort {
				t.Errorf("mapping %v keeps port %d: %v, want %v", m1, DefaultNodePort, got, tc.keepsPort)
			}

			// Filtering, before c has sent to anyone but s1.
			for _, s := range []*net.UDPConn{s2, s1port} {
				if _, err := s.WriteToUDPAddrPort([]byte("unsolicited"), m1); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s1.WriteToUDPAddrPort([]byte("reply"), m1); err != nil {
				t.Fatal(err)
			}
			got, err := receiveUntil(c, "reply")
			if err != nil {
				t.Fatalf("reply from the server c sent to: %v (got %q)", err, got)
			}
			if n := strings.Count(strings.Join(got, ","), "unsolicited"); tc.eif && n != 2 || !tc.eif && n != 0 {
				t.Errorf("endpoint-independent filtering %v, but %d unsolicited datagrams arrived (%q)", tc.eif, n, got)
			}

			// Mapping towards the other address and port.
			maps := []netip.AddrPort{m1}
			for _, s := range []*net.UDPConn{s2, s2port} {
				m, err := observe(c, s)
				if err != nil {
					t.Fatal(err)
				}
				maps = append(maps, m)
			}
			if tc.remapsEarly {
				if maps[1].Addr() != m1.Addr() || maps[1].Port() == m1.Port() {
					t.Errorf("mappings towards s1 and s2 (which sent early) are %v and %v; want s2's on another port", m1, maps[1])
				}
				return
			}
			slices.SortFunc(maps, netip.AddrPort.Compare)
			distinct := len(slices.Compact(maps))
			if tc.eim && distinct != 1 || !tc.eim && distinct == 1 {
				t.Errorf("endpoint-independent mapping %v, but mappings are %v", tc.eim, maps)
			}
		})
	}
}

// checkTCP dials a TCP listener on the server from the host.
func checkTCP(t *testing.T, from, srvNS *Netns) {
	t.Helper()
	var ln net.Listener
	if err := srvNS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "198.18.0.1:8443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	var c net.Conn
	if err := from.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", "198.18.0.1:8443", probeTries*probeWait)
		return err
	}); err != nil {
		t.Fatalf("TCP through the router: %v", err)
	}
	c.Close()
}

// TestRouterEvents checks the events the scenarios rely on: no hairpin,
// an address change, a NAT restart, per-namespace UDP timeouts.
func TestRouterEvents(t *testing.T) {
	l, srvNS := newTestLabWithServer(t)
	ctx := testCtx(t)
	s1 := udpIn(t, srvNS, "198.18.0.1:3478")
	site, err := l.AddSite(ctx, SiteConfig{Kind: PortRestricted, Hosts: 2, UDPTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := site.Router
	c1 := udpIn(t, site.Hosts[0].NS, "0.0.0.0:41820")
	c2 := udpIn(t, site.Hosts[1].NS, "0.0.0.0:41820")
	m1, err := observe(c1, s1)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no hairpin", func(t *testing.T) {
		if _, err := c2.WriteToUDPAddrPort([]byte("hairpin"), m1); err != nil {
			t.Fatal(err)
		}
		lan := netip.AddrPortFrom(site.Hosts[0].Addr, DefaultNodePort)
		if _, err := c2.WriteToUDPAddrPort([]byte("lan"), lan); err != nil {
			t.Fatal(err)
		}
		got, err := receiveUntil(c1, "lan")
		if err != nil {
			t.Fatalf("datagram over the LAN: %v", err)
		}
		if slices.Contains(got, "hairpin") {
			t.Errorf("the router hairpinned %v back to its LAN; got %q", m1, got)
		}
	})

	t.Run("UDP timeout is per namespace", func(t *testing.T) {
		out, err := r.NS.Exec(ctx, "cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); !slices.Equal(f, []string{"20", "20"}) {
			t.Errorf("router's UDP timeouts %q, want 20 and 20", f)
		}
		root, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(root)) == "20" {
			t.Logf("the machine's own stream timeout is also 20 s; can't tell it apart")
		}
	})

	t.Run("address change", func(t *testing.T) {
		addr := NewWANAddr(site.Index)
		if err := r.ChangeWAN(ctx, addr); err != nil {
			t.Fatal(err)
		}
		m, err := observe(c1, s1)
		if err != nil {
			t.Fatalf("after the address change: %v", err)
		}
		if m.Addr() != addr {
			t.Errorf("mapping %v after moving the router to %v", m, addr)
		}
	})

	t.Run("restart", func(t *testing.T) {
		if err := r.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := observe(c1, s1)
		if err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		if m.Addr() != r.WAN() {
			t.Errorf("mapping %v after the restart, want the router's %v", m, r.WAN())
		}
		out, err := r.Conntrack(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "dport=3478") {
			t.Errorf("conntrack lacks the new flow:\n%s", out)
		}
	})
}

func TestParseFlows(t *testing.T) {
	out := `udp      17 29 src=198.18.2.1 dst=198.18.1.1 sport=41820 dport=41820 [UNREPLIED] src=198.18.1.1 dst=198.18.2.1 sport=41820 dport=41820 mark=0 use=1
udp      17 27 src=10.1.0.2 dst=198.18.2.1 sport=41820 dport=41820 [UNREPLIED] src=198.18.2.1 dst=198.18.1.1 sport=41820 dport=34514 mark=0 use=1
conntrack v1.4.8 (conntrack-tools): 2 flow entries have been shown.
`
	fs, err := parseFlows(out)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := []Flow{
		{Orig: [2]netip.AddrPort{ap("198.18.2.1:41820"), ap("198.18.1.1:41820")}, Reply: [2]netip.AddrPort{ap("198.18.1.1:41820"), ap("198.18.2.1:41820")}},
		{Orig: [2]netip.AddrPort{ap("10.1.0.2:41820"), ap("198.18.2.1:41820")}, Reply: [2]netip.AddrPort{ap("198.18.2.1:41820"), ap("198.18.1.1:34514")}},
	}
	if !slices.Equal(fs, want) {
		t.Errorf("flows %v, want %v", fs, want)
	}
	if _, err := parseFlows("udp 17 29 src=1.2.3.4 dst=x sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1\n"); err == nil {
		t.Error("a bad address parsed")
	}
}

// TestForwardTCP checks a router's port forward: closed before, then a
// server behind the NAT answers on the WAN address and sees the client's
// own address (no source translation inbound).
// serverAndSite is a lab with a server on its internet and a
// port-restricted site, removed when t ends, and a context for t.
func serverAndSite(t *testing.T) (*Netns, *Site, context.Context) {
	t.Helper()
	l, srvNS := newTestLabWithServer(t)
	ctx := testCtx(t)
	site, err := l.AddSite(ctx, SiteConfig{Kind: PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { site.Close() })
	return srvNS, site, ctx
}

func TestForwardTCP(t *testing.T) {
	srvNS, site, ctx := serverAndSite(t)
	host := site.Hosts[0]
	var ln net.Listener
	if err := host.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", ":5201")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan netip.AddrPort, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			c.Close()
		}
	}()
	wan := netip.AddrPortFrom(site.Router.WAN(), 5201).String()
	dial := func(timeout time.Duration) error {
		return srvNS.Do(func() error {
			c, err := net.DialTimeout("tcp4", wan, timeout)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(probeWait); err == nil {
		t.Fatalf("%s answered before any port forward", wan)
	}
	if err := site.Router.ForwardTCP(ctx, 5201, netip.AddrPortFrom(host.Addr, 5201)); err != nil {
		t.Fatal(err)
	}
	if err := dial(probeTries * probeWait); err != nil {
		t.Fatalf("through the port forward: %v", err)
	}
	if got, want := (<-peers).Addr(), netip.MustParseAddr("198.18.0.1"); got != want {
		t.Errorf("server behind the NAT saw %v, want the client's %v", got, want)
	}
}

func TestForwardEcho(t *testing.T) {
	srvNS, site, ctx := serverAndSite(t)
	host := site.Hosts[0]
	wan := site.Router.WAN()
	if r, err := srvNS.Ping(ctx, wan, 1); err == nil {
		t.Fatalf("%v answered a ping before any forward:\n%s", wan, r.Output)
	}
	before := echoReplies(ctx, t, host.NS)
	if err := site.Router.ForwardEcho(ctx, host.Addr); err != nil {
		t.Fatal(err)
	}
	if r, err := srvNS.Ping(ctx, wan, 3); err != nil || r.Received != 3 {
		t.Fatalf("ping %v through the forward: %+v, %v; want 3 replies", wan, r, err)
	}
	if got := echoReplies(ctx, t, host.NS) - before; got != 3 {
		t.Errorf("the host behind the NAT sent %d echo replies, want the 3 (the router must not answer itself)", got)
	}
}

// echoReplies is the ICMP echo replies n has sent (/proc/net/snmp is the
// reading process's namespace's: Icmp's OutEchoReps).
func echoReplies(ctx context.Context, t *testing.T, n *Netns) int {
	t.Helper()
	out, err := n.Exec(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "OutEchoReps"); i > 0 && i < len(f) {
			v, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatalf("OutEchoReps %q: %v", f[i], err)
			}
			return v
		}
	}
	t.Fatalf("no Icmp OutEchoReps in /proc/net/snmp:\n%s", out)
	return 0
}
