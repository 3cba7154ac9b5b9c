package node_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/localapi"
)

// Ports of the policy scenario.
const (
	webPort = 80
	sshPort = 22
)

// officePolicy is what the coordinator would compile for the scenario:
// the home machines reach the office's web server and ping it; nothing
// else is allowed (SSH included, and nothing from the office to home).
func officePolicy(version uint64, web bool, office *meshlab.Node, homes ...*meshlab.Node) *wire.Filter {
	var src []netip.Prefix
	for _, h := range homes {
		src = append(src, netip.PrefixFrom(h.Addr4(), 32))
	}
	dst := []netip.Prefix{netip.PrefixFrom(office.Addr4(), 32)}
	f := &wire.Filter{Version: version, Rules: []wire.FilterRule{{Rule: "home pings the office", Src: src, Dst: dst, Proto: wire.ProtoICMP}}}
	if web {
		f.Rules = append(f.Rules, wire.FilterRule{Rule: "home to office web", Src: src, Dst: dst, Proto: wire.ProtoTCP, Ports: []wire.PortRange{{First: webPort, Last: webPort}}})
	}
	return f
}

// push applies a filter to nodes, as the coordinator's push would.
func push(t *testing.T, f *wire.Filter, nodes ...*meshlab.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Engine.SetFilter(f); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
	}
}

// denied is what n's filter denied against rule ("" for no rule), each
// way.
func denied(n *meshlab.Node, rule string) localapi.RuleDenied {
	p := n.Engine.Status().Policy
	if rule == "" {
		return p.DeniedNoRule
	}
	for _, d := range p.Denied {
		if d.Rule == rule {
			return d
		}
	}
	return localapi.RuleDenied{}
}

// server accepts TCP connections on one of n's overlay ports and echoes
// what each sends; received collects all it read.
type server struct {
	ln       net.Listener
	received chan []byte
}

func serve(t *testing.T, n *meshlab.Node, port uint16) *server {
	t.Helper()
	ln, err := n.Net.ListenTCPAddrPort(netip.AddrPortFrom(n.Addr4(), port))
	if err != nil {
		t.Fatalf("listen on %s:%d: %v", n.Name, port, err)
	}
	s := &server{ln: ln, received: make(chan []byte, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					k, err := c.Read(buf)
					if err != nil {
						return
					}
					s.received <- bytes.Clone(buf[:k])
					if _, err := c.Write(buf[:k]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

// roundTrip sends msg on c and reads the echo back.
func roundTrip(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(transferDeadline)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("echo garbled")
	}
	return nil
}

// dial opens a TCP connection from a to b's port over the overlay.
func dial(ctx context.Context, a, b *meshlab.Node, port uint16) (net.Conn, error) {
	return a.Net.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(b.Addr4(), port))
}

// dialDenied dials a denied port in the background, waits until deny
// (polled) shows the filter dropped the SYN, and checks the dial never
// connected.
func dialDenied(t *testing.T, a, b *meshlab.Node, port uint16, what string, deny func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		c, err := dial(ctx, a, b, port)
		if err == nil {
			c.Close()
		}
		result <- err
	}()
	wait.For(t, pathDeadline, what, deny)
	cancel()
	if err := <-result; err == nil {
		t.Errorf("%s: %s reached %s:%d", what, a.Name, b.Name, port)
	}
}

// ping sends one ICMP echo request from a to b over the overlay and
// waits for the reply until ctx ends.
func ping(ctx context.Context, a, b *meshlab.Node) error {
	pc, err := a.Net.DialPingAddr(a.Addr4(), b.Addr4())
	if err != nil {
		return err
	}
	defer pc.Close()
	msg, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 1, Seq: 1, Data: []byte("policy")}}).Marshal(nil)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		if _, err := pc.Write(msg); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		n, err := pc.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // lost: ask again
		}
		if err != nil {
			return err
		}
		if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
			return nil
		}
	}
	return ctx.Err()
}

// The access policy is enforced at both ends: home reaches the office's
// web server and pings it, the replies come back, SSH is kept out both by
// home's own filter and, for a home machine that skips its filter, by the
// office's; a policy that drops the web rule stops open connections at
// their next packet.
func TestAccessPolicyEnforcedAtBothEnds(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	homeNet, officeNet := m.NAT(homeNAT("home")), m.NAT(homeNAT("office"))
	home := m.AddNode("home", homeNet.NewHost("home", netip.MustParseAddr("192.168.1.10")), meshlab.NodeOptions{})
	rogue := m.AddNode("rogue", homeNet.NewHost("rogue", netip.MustParseAddr("192.168.1.11")), meshlab.NodeOptions{UnfilteredSends: true})
	office := m.AddNode("office", officeNet.NewHost("office", netip.MustParseAddr("10.0.0.20")), meshlab.NodeOptions{})
	waitDirect(t, home, office)
	waitDirect(t, rogue, office)
	all := []*meshlab.Node{office, home, rogue}
	push(t, officePolicy(1, true, office, home, rogue), all...)
	web := serve(t, office, webPort)
	ssh := serve(t, office, sshPort)
	homeBack := serve(t, home, webPort)

	ctx, cancel := context.WithTimeout(context.Background(), transferDeadline)
	defer cancel()
	// Allowed: web and ping from home, and the replies come back.
	conns := map[string]net.Conn{}
	for _, n := range []*meshlab.Node{home, rogue} {
		c, err := dial(ctx, n, office, webPort)
		if err != nil {
			t.Fatalf("%s to the office's web server: %v", n.Name, err)
		}
		defer c.Close()
		if err := roundTrip(c, "hello from "+n.Name); err != nil {
			t.Fatalf("%s: web round trip: %v", n.Name, err)
		}
		conns[n.Name] = c
	}
	if err := ping(ctx, home, office); err != nil {
		t.Fatalf("home pings the office: %v", err)
	}

	// Denied: SSH from home, dropped by home's own filter before the wire.
	officeIn := office.Engine.Status().Counters["filter_denied_in"]
	dialDenied(t, home, office, sshPort, "home's filter drops its SSH", func() bool {
		return denied(home, "home to office web").Out > 0
	})
	if got := office.Engine.Status().Counters["filter_denied_in"]; got != officeIn {
		t.Errorf("the office saw %d denied packets from home: home's own filter should have kept them off the wire", got-officeIn)
	}
	// Denied at the receiver: SSH from a home machine whose filter is off.
	dialDenied(t, rogue, office, sshPort, "the office drops SSH the rogue sends", func() bool {
		return denied(office, "home to office web").In > 0
	})
	if rogue.Engine.Status().Counters["filter_denied_out"] != 0 {
		t.Error("the rogue's filter counted denied packets: it should have sent them")
	}
	// Denied: the office opening anything at home.
	dialDenied(t, office, home, webPort, "the office can't open connections to home", func() bool {
		return denied(office, "").Out > 0
	})
	select {
	case b := <-ssh.received:
		t.Errorf("the office's SSH server got %q", b)
	case b := <-homeBack.received:
		t.Errorf("home's server got %q from the office", b)
	default:
	}

	// The status says who may reach whom.
	for _, c := range []struct {
		from, to         *meshlab.Node
		reach, reachedBy bool
	}{{home, office, true, false}, {office, home, false, true}} {
		for _, p := range c.from.Engine.Status().Peers {
			if p.Name == c.to.Name && (p.Reach != c.reach || p.ReachedBy != c.reachedBy) {
				t.Errorf("%s's status: %s reach %v, reached_by %v; want %v, %v", c.from.Name, p.Name, p.Reach, p.ReachedBy, c.reach, c.reachedBy)
			}
		}
	}

	// The web rule goes: the open connections stop, the rogue's at the
	// office (its own filter is off).
	for len(web.received) > 0 {
		<-web.received
	}
	revoked := office.Engine.Status().Counters["filter_flows_revoked"]
	push(t, officePolicy(2, false, office, home, rogue), all...)
	for _, n := range []*meshlab.Node{home, rogue} {
		conns[n.Name].SetWriteDeadline(time.Now().Add(transferDeadline))
		if _, err := conns[n.Name].Write([]byte("after the change")); err != nil {
			t.Fatalf("%s: write: %v", n.Name, err)
		}
	}
	wait.For(t, pathDeadline, "the home connection stopped by home's filter", func() bool {
		return home.Engine.Status().Counters["filter_flows_revoked"] > 0
	})
	wait.For(t, pathDeadline, "the rogue's connection stopped by the office's filter", func() bool {
		return office.Engine.Status().Counters["filter_flows_revoked"] > revoked && denied(office, "home pings the office").In > 0
	})
	select {
	case b := <-web.received:
		t.Errorf("the office's web server got %q after the web rule went", b)
	default:
	}
	if err := ping(ctx, home, office); err != nil {
		t.Errorf("home pings the office under the new policy: %v", err)
	}
}
