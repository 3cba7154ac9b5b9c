package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// DNS timing in the lab.
const (
	// dnsTimeout bounds a name's appearance or removal: the coordinator
	// pushes changes at once, so only a broken mesh reaches it.
	dnsTimeout = 10 * time.Second
	// dnsPoll is how often a wait asks again: fine enough to time a
	// rename to a few tens of milliseconds.
	dnsPoll = 20 * time.Millisecond
	// queryTimeout is a client's wait for one answer; silence is a wait
	// for an answer that must not come.
	queryTimeout = 5 * time.Second
	silence      = time.Second
)

// upstreamAddr is the lab's stand-in for the machines' upstream resolver:
// the coordinator host, port 53. No test asks a real resolver.
func upstreamAddr() netip.AddrPort {
	a, _ := netlab.CoordinatorAddrs()
	return netip.AddrPortFrom(a, 53)
}

// fakeUpstream answers on upstreamAddr, in the coordinator's namespace:
// example.test is 192.0.2.1, every other name NXDOMAIN. It counts the
// queries it got.
func fakeUpstream(t *testing.T, ns *netlab.Netns) *atomic.Int64 {
	t.Helper()
	var queries atomic.Int64
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		if q := req.Question[0]; q.Name == "example.test." && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		} else if q.Name != "example.test." {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", upstreamAddr().String()); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", upstreamAddr().String())
		return err
	}); err != nil {
		t.Fatalf("fake upstream resolver: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return &queries
}

// query asks the resolver at server, from inside ns, over network.
func query(ns *netlab.Netns, server netip.Addr, network, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	var resp *dns.Msg
	err := ns.Do(func() error {
		var err error
		resp, _, err = (&dns.Client{Net: network, Timeout: timeout}).Exchange(q, netip.AddrPortFrom(server, 53).String())
		return err
	})
	return resp, err
}

// answers are the records' data: addresses, PTR targets.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String()) // NAME TTL CLASS TYPE DATA
		out = append(out, f[len(f)-1])
	}
	return out
}

// waitAnswer polls the resolver at server from ns until it answers name
// with want (nil: NXDOMAIN), and returns how long that took.
func waitAnswer(t *testing.T, ns *netlab.Netns, server netip.Addr, name string, qtype uint16, want []string) time.Duration {
	t.Helper()
	start := time.Now()
	err := netlab.Poll(t.Context(), dnsTimeout, dnsPoll, func(context.Context) error {
		resp, err := query(ns, server, "udp", name, qtype, time.Second)
		switch {
		case err != nil:
			return err
		case want == nil && resp.Rcode != dns.RcodeNameError:
			return fmt.Errorf("%s: %s %v, want NXDOMAIN", name, dns.RcodeToString[resp.Rcode], answers(resp))
		case want != nil && (resp.Rcode != dns.RcodeSuccess || !slices.Equal(answers(resp), want)):
			return fmt.Errorf("%s: %s %v, want %v", name, dns.RcodeToString[resp.Rcode], answers(resp), want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("resolver %s from %s: %v", server, ns.Name, err)
	}
	return time.Since(start)
}

// dnsNode starts a node with further flags; when the test ends it goes
// down (the test's own lab and coordinator go with it: the test renames
// and removes nodes itself).
func dnsNode(t *testing.T, e *env, h *netlab.Host, name string, args ...string) *netlab.Node {
	t.Helper()
	return e.startNode(t, h, netlab.NodeConfig{Name: name, Token: e.token, Args: args}, false)
}

// run runs a command in ns and fails the test when it fails.
func run(t *testing.T, ns *netlab.Netns, name string, args ...string) string {
	t.Helper()
	out, err := ns.Exec(t.Context(), name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return out
}

// TestDNS: every node answers the mesh's names on its overlay addresses,
// and only there; a node that manages resolv.conf makes `ping NAME` work
// and puts the file back exactly on down and after a crash; renames and
// removals show at once.
func TestDNS(t *testing.T) {
	e := newEnv(t, "--dns-records", "nas=192.168.1.10")
	upstreamQueries := fakeUpstream(t, e.coord.NS)
	home := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	office := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	const original = "# the lab's DHCP\nnameserver 198.18.0.1\nsearch lan.example\noptions edns0 timeout:2\n"
	for _, h := range []*netlab.Host{home.Hosts[0], office.Hosts[0]} {
		if err := h.NS.SetResolvConf(original); err != nil {
			t.Fatal(err)
		}
	}
	resolvConf := func() string {
		b, err := os.ReadFile(office.Hosts[0].NS.ResolvConfPath())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	desktop := dnsNode(t, e, home.Hosts[0], "desktop")
	laptop := dnsNode(t, e, office.Hosts[0], "laptop", "--dns", "manage-resolv-conf")
	mustDirect(t, laptop, desktop)
	ls, ds := mustStatus(t, laptop), mustStatus(t, desktop)
	lap, desk := ls.Me().V4(), ds.Me().V4()
	var desk6 string
	for _, a := range ds.Self.Addresses {
		if a.Is6() {
			desk6 = a.String()
		}
	}
	ns := laptop.Host.NS

	// What each node says of its resolver. Neither namespace has
	// systemd-resolved: the desktop says so and leaves its resolv.conf
	// alone; the laptop manages its own.
	if d := ds.DNS; !d.Enabled || d.OS != "none" || !strings.Contains(d.OSNote, "no systemd-resolved") || len(d.Listen) != 2 {
		t.Fatalf("desktop's DNS status: %+v", d)
	}
	if d := ls.DNS; d.OS != "resolv.conf" || !slices.Equal(d.Upstreams, []string{upstreamAddr().String()}) {
		t.Fatalf("laptop's DNS status: %+v", d)
	}
	if b, _ := os.ReadFile(home.Hosts[0].NS.ResolvConfPath()); string(b) != original {
		t.Fatalf("the desktop (dns: split) changed its resolv.conf:\n%s", b)
	}
	managed := resolvConf()
	for _, w := range []string{"nameserver " + lap.String() + "\n", "search mesh.internal lan.example\n", "options edns0 timeout:2\n"} {
		if !strings.Contains(managed, w) {
			t.Fatalf("the laptop's resolv.conf while it runs:\n%s\nwant it to contain %q", managed, w)
		}
	}

	// dig @<overlay resolver>: the laptop's own, and the desktop's across
	// the mesh, UDP and TCP.
	waitAnswer(t, ns, lap, "desktop.mesh.internal.", dns.TypeA, []string{desk.String()})
	waitAnswer(t, ns, lap, "desktop.mesh.internal.", dns.TypeAAAA, []string{desk6})
	waitAnswer(t, ns, lap, "nas.mesh.internal.", dns.TypeA, []string{"192.168.1.10"})
	reverse, _ := dns.ReverseAddr(desk.String())
	waitAnswer(t, ns, lap, reverse, dns.TypePTR, []string{"desktop.mesh.internal."})
	for _, network := range []string{"udp", "tcp"} {
		resp, err := query(ns, desk, network, "laptop.mesh.internal.", dns.TypeA, queryTimeout)
		if err != nil || !slices.Equal(answers(resp), []string{lap.String()}) || !resp.Authoritative {
			t.Fatalf("the desktop's resolver over %s: %v, %v", network, resp, err)
		}
	}
	// Everything else goes to the machine's upstream.
	before := upstreamQueries.Load()
	if resp, err := query(ns, lap, "udp", "example.test.", dns.TypeA, queryTimeout); err != nil || !slices.Equal(answers(resp), []string{"192.0.2.1"}) {
		t.Fatalf("a name outside the mesh: %v, %v", resp, err)
	}
	if upstreamQueries.Load() == before {
		t.Fatal("the upstream was not asked")
	}

	// Through the system's resolver: ping and getent with the name, and a
	// bare name through the search list.
	tools := e.lab.Tools()
	for _, name := range []string{"desktop.mesh.internal", "desktop"} {
		out := run(t, ns, tools.Ping, "-c", "1", "-W", "5", name)
		t.Logf("ping %s: %s", name, strings.SplitN(out, "\n", 2)[0])
	}
	if out := run(t, ns, "getent", "hosts", "example.test"); !strings.Contains(out, "192.0.2.1") {
		t.Fatalf("getent hosts example.test through the resolver: %q", out)
	}
	if out, err := laptop.Ping(t.Context(), "desktop.mesh.internal", 1); err != nil {
		t.Fatalf("meshnode ping desktop.mesh.internal: %v\n%s", err, out)
	}
	if out, err := exec.Command(e.bin, "status", "desktop.mesh.internal", "--socket", laptop.Socket()).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "\ndesktop ") || !strings.Contains(string(out), "dns laptop.mesh.internal") {
		t.Fatalf("meshnode status desktop.mesh.internal: %v\n%s", err, out)
	}

	// The LAN can't use the resolver: a LAN neighbour routing to the
	// laptop's overlay address gets nothing over UDP, a closed
	// connection over TCP.
	router := office.Router.NS
	if err := router.IP(t.Context(), fmt.Sprintf("route add %s/32 via %s", lap, office.Hosts[0].Addr)); err != nil {
		t.Fatal(err)
	}
	if resp, err := query(router, lap, "udp", "desktop.mesh.internal.", dns.TypeA, silence); err == nil {
		t.Fatalf("the LAN got an answer over UDP: %v", resp)
	}
	if resp, err := query(router, lap, "tcp", "desktop.mesh.internal.", dns.TypeA, silence); err == nil {
		t.Fatalf("the LAN got an answer over TCP: %v", resp)
	}
	if resp, err := query(router, office.Hosts[0].Addr, "udp", "desktop.mesh.internal.", dns.TypeA, silence); err == nil {
		t.Fatalf("the laptop's LAN address answered DNS: %v", resp)
	}
	if got := mustStatus(t, laptop).DNS.Counters["refused_source"]; got < 2 {
		t.Fatalf("refused_source = %d, want the LAN's packet and connection counted", got)
	}

	// A rename shows at once, on the resolver and through the system's.
	start := time.Now()
	if err := e.coord.RenameNode(t.Context(), "desktop", "workstation"); err != nil {
		t.Fatal(err)
	}
	commanded := time.Since(start)
	shown := waitAnswer(t, ns, lap, "workstation.mesh.internal.", dns.TypeA, []string{desk.String()})
	waitAnswer(t, ns, lap, "desktop.mesh.internal.", dns.TypeA, nil)
	if out := run(t, ns, "getent", "ahostsv4", "workstation"); !strings.Contains(out, desk.String()) {
		t.Fatalf("getent ahostsv4 workstation: %q", out)
	}
	t.Logf("rename: the command took %v, the new name resolved on the peer %v after it returned (%v in all)",
		commanded.Round(time.Millisecond), shown.Round(time.Millisecond), (commanded + shown).Round(time.Millisecond))

	// A removed node stops resolving.
	if err := desktop.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := e.coord.RemoveNode(t.Context(), "workstation"); err != nil {
		t.Fatal(err)
	}
	commanded = time.Since(start)
	gone := waitAnswer(t, ns, lap, "workstation.mesh.internal.", dns.TypeA, nil)
	t.Logf("removal: the command took %v, the name was gone on the peer %v after it returned", commanded.Round(time.Millisecond), gone.Round(time.Millisecond))

	// Down puts resolv.conf back exactly.
	if err := laptop.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := resolvConf(); got != original {
		t.Fatalf("resolv.conf after down:\n%q\nwant the original\n%q", got, original)
	}

	// A crash leaves meshnode's resolv.conf; the next start puts the
	// original back, even with the resolver turned off.
	crashed := dnsNode(t, e, office.Hosts[0], "laptop", "--dns", "manage-resolv-conf")
	if err := netlab.Poll(t.Context(), dnsTimeout, netlab.PollInterval, func(context.Context) error {
		if resolvConf() == original {
			return errors.New("resolv.conf not managed yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := crashed.Proc().Kill(); err != nil {
		t.Fatal(err)
	}
	if got := resolvConf(); got == original {
		t.Fatal("resolv.conf was restored by a killed node?")
	}
	off := dnsNode(t, e, office.Hosts[0], "laptop", "--accept-dns=false")
	if got := resolvConf(); got != original {
		t.Fatalf("resolv.conf after a crash and a new start:\n%q\nwant the original\n%q", got, original)
	}
	if d := mustStatus(t, off).DNS; d.Enabled {
		t.Fatalf("a node with --accept-dns=false runs a resolver: %+v", d)
	}
}
