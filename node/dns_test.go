package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/meshdns"
)

// dnsDeadline bounds waiting for a name to appear or go: the coordinator
// pushes changes at once, so this is only reached when something is
// broken.
const dnsDeadline = 10 * time.Second

// lookup asks the resolver at server, from node from's overlay stack, for
// name's records of qtype over network. It returns the rcode and the
// addresses (or PTR targets) answered.
func lookup(from *meshlab.Node, server netip.Addr, network, name string, qtype uint16) (int, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	to := netip.AddrPortFrom(server, meshdns.Port)
	co := &dns.Conn{}
	var err error
	if network == "tcp" {
		co.Conn, err = from.Net.DialContextTCPAddrPort(ctx, to)
	} else {
		co.Conn, err = from.Net.DialUDPAddrPort(netip.AddrPort{}, to)
	}
	if err != nil {
		return 0, nil, err
	}
	defer co.Close()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	resp, _, err := (&dns.Client{Net: network}).ExchangeWithConnContext(ctx, q, co)
	if err != nil {
		return 0, nil, err
	}
	var got []string
	for _, rr := range resp.Answer {
		f := strings.Fields(rr.String()) // NAME TTL CLASS TYPE DATA
		got = append(got, f[len(f)-1])
	}
	return resp.Rcode, got, nil
}

// resolves waits until the resolver answers name with want (nil: until it
// answers NXDOMAIN) and returns how long that took.
func resolves(t *testing.T, from *meshlab.Node, server netip.Addr, name string, qtype uint16, want []string) time.Duration {
	t.Helper()
	what := fmt.Sprintf("%s's resolver at %s answers %s %s with %v", from.Name, server, name, dns.TypeToString[qtype], want)
	return wait.ForNil(t, dnsDeadline, what, func() error {
		rcode, got, err := lookup(from, server, "udp", name, qtype)
		switch {
		case err != nil:
			return err
		case want == nil && rcode != dns.RcodeNameError:
			return fmt.Errorf("rcode %s, answers %v; want NXDOMAIN", dns.RcodeToString[rcode], got)
		case want != nil && (rcode != dns.RcodeSuccess || !slices.Equal(got, want)):
			return fmt.Errorf("rcode %s, answers %v", dns.RcodeToString[rcode], got)
		}
		return nil
	})
}

func addrs(n *meshlab.Node) (v4, v6 string) {
	for _, a := range n.Engine.Self().Addresses {
		if a.Is4() {
			v4 = a.String()
		} else {
			v6 = a.String()
		}
	}
	return v4, v6
}

// Every node answers the mesh's names on its overlay addresses: its own
// resolver from the node itself, a peer's across the mesh; names follow a
// rename and a removal at once; the administrator's records resolve.
func TestNamesAcrossTheMesh(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{DNSRecords: []string{"nas=192.168.1.10"}})
	laptop := m.AddNode("laptop", m.Lab.NewHost("laptop", netip.MustParseAddr("198.18.7.7")), meshlab.NodeOptions{})
	home := natlab.PortRestrictedCone()
	home.Name = "home"
	desktop := m.AddNode("desktop", m.NAT(home).NewHost("desktop", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	own := laptop.Addr4()
	d4, d6 := addrs(desktop)
	l4, _ := addrs(laptop)

	// The laptop asks its own resolver, on its own overlay address.
	t.Logf("desktop resolves on the laptop after %v", resolves(t, laptop, own, "desktop.mesh.internal.", dns.TypeA, []string{d4}))
	resolves(t, laptop, own, "desktop.mesh.internal.", dns.TypeAAAA, []string{d6})
	resolves(t, laptop, own, "nas.mesh.internal.", dns.TypeA, []string{"192.168.1.10"})
	resolves(t, laptop, own, "laptop.mesh.internal.", dns.TypeA, []string{l4})
	reverse, _ := dns.ReverseAddr(d4)
	resolves(t, laptop, own, reverse, dns.TypePTR, []string{"desktop.mesh.internal."})
	resolves(t, laptop, own, "tablet.mesh.internal.", dns.TypeA, nil)
	// With no upstream, other names fail at once, not after a timeout.
	if rcode, _, err := lookup(laptop, own, "udp", "example.test.", dns.TypeA); err != nil || rcode != dns.RcodeServerFailure {
		t.Fatalf("a name outside the mesh without an upstream: %s, %v; want SERVFAIL", dns.RcodeToString[rcode], err)
	}
	// And the desktop's resolver, across the mesh, over UDP and TCP.
	resolves(t, laptop, desktop.Addr4(), "laptop.mesh.internal.", dns.TypeA, []string{l4})
	if rcode, got, err := lookup(laptop, desktop.Addr4(), "tcp", "laptop.mesh.internal.", dns.TypeA); err != nil || rcode != dns.RcodeSuccess || !slices.Equal(got, []string{l4}) {
		t.Fatalf("over TCP across the mesh: %s %v, %v", dns.RcodeToString[rcode], got, err)
	}
	if r, err := laptop.Engine.Ping(context.Background(), "Desktop.mesh.internal."); err != nil || r.Peer != "desktop" {
		t.Fatalf("ping by the full name: %+v, %v", r, err)
	}

	st := laptop.Engine.Status().DNS
	if !st.Enabled || st.Domain != "mesh.internal" || len(st.Listen) != 2 || st.Counters["answered"] == 0 {
		t.Fatalf("laptop's DNS status: %+v", st)
	}

	// A rename: the new name resolves, the old one no more, everywhere.
	start := time.Now()
	if _, err := m.Coord.RenameNode(context.Background(), "desktop", "workstation"); err != nil {
		t.Fatal(err)
	}
	resolves(t, laptop, own, "workstation.mesh.internal.", dns.TypeA, []string{d4})
	renamed := time.Since(start)
	resolves(t, laptop, own, "desktop.mesh.internal.", dns.TypeA, nil)
	resolves(t, laptop, own, reverse, dns.TypePTR, []string{"workstation.mesh.internal."})
	resolves(t, desktop, desktop.Addr4(), "workstation.mesh.internal.", dns.TypeA, []string{d4})
	wait.For(t, dnsDeadline, "the desktop's status shows its new name", func() bool { return desktop.Engine.Status().Self.Name == "workstation" })
	t.Logf("the new name resolved on a peer %v after the rename", renamed.Round(time.Millisecond))

	// A removal: the name goes.
	if err := desktop.Stop(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := m.Coord.RemoveNode(context.Background(), "workstation"); err != nil {
		t.Fatal(err)
	}
	resolves(t, laptop, own, "workstation.mesh.internal.", dns.TypeA, nil)
	t.Logf("the removed node stopped resolving %v after the removal", time.Since(start).Round(time.Millisecond))
	resolves(t, laptop, own, reverse, dns.TypePTR, nil)
}
