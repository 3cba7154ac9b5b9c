package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// primeTTL is the lowest TTL that leaves the sender's NAT (which forwards
// it with TTL 1) and dies at the next hop: here the far router's ISP hop.
const primeTTL = 2

// TestEarlyRemap shows the router kind the matrix calls earlyremap and the
// low-TTL priming that gets two of them connected: a host behind each, both
// sending from port 41820 to the other's public 41820.
func TestEarlyRemap(t *testing.T) {
	l := newTestLab(t)
	ctx := testCtx(t)
	var routers [2]*Router
	var conns [2]*net.UDPConn
	for i := range routers {
		s, err := l.AddSite(ctx, SiteConfig{Kind: EarlyRemap})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close site: %v", err)
			}
		})
		routers[i] = s.Router
		conns[i] = udpIn(t, s.Hosts[0].NS, fmt.Sprintf("0.0.0.0:%d", DefaultNodePort))
	}
	a, b := conns[0], conns[1]
	pubA := netip.AddrPortFrom(routers[0].WAN(), DefaultNodePort)
	pubB := netip.AddrPortFrom(routers[1].WAN(), DefaultNodePort)
	flush := func(t *testing.T) {
		for _, r := range routers {
			if err := r.FlushConntrack(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("an early datagram takes the port", func(t *testing.T) {
		flush(t)
		// b speaks first: its router maps it to pubB, and the datagram
		// reaches a's router before a has sent to pubB.
		if _, err := b.WriteToUDPAddrPort([]byte("early"), pubA); err != nil {
			t.Fatal(err)
		}
		if _, err := waitFlow(ctx, routers[0], func(f Flow) bool { return f.Orig == [2]netip.AddrPort{pubB, pubA} }); err != nil {
			t.Fatalf("a's router kept no flow for b's early datagram: %v", err)
		}
		// a's own flow to pubB now needs another public port.
		if _, err := a.WriteToUDPAddrPort([]byte("answer"), pubB); err != nil {
			t.Fatal(err)
		}
		f, err := waitFlow(ctx, routers[0], func(f Flow) bool { return f.Orig[1] == pubB && f.Reply[0] == pubB })
		if err != nil {
			t.Fatalf("a's router has no flow from a to b: %v", err)
		}
		if got := f.Reply[1]; got == pubA {
			t.Errorf("a's flow to %v kept %v despite the early datagram", pubB, got)
		} else {
			t.Logf("a's flow to %v mapped to %v, not %v", pubB, got, pubA)
		}
	})

	t.Run("primed first, both get through", func(t *testing.T) {
		flush(t)
		for _, c := range []struct {
			conn *net.UDPConn
			to   netip.AddrPort
		}{{a, pubB}, {b, pubA}} {
			p := ipv4.NewConn(c.conn)
			if err := p.SetTTL(primeTTL); err != nil {
				t.Fatal(err)
			}
			if _, err := c.conn.WriteToUDPAddrPort([]byte("prime"), c.to); err != nil {
				t.Fatal(err)
			}
			if err := p.SetTTL(64); err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range routers {
			// Each router holds its own host's flow, and nothing the
			// other's prime would have left.
			own, err := waitFlow(ctx, r, func(f Flow) bool { return f.Reply[0] == []netip.AddrPort{pubB, pubA}[i] })
			if err != nil {
				t.Fatalf("%s: the prime opened no mapping: %v", r.NS.Name, err)
			}
			if own.Reply[1] != []netip.AddrPort{pubA, pubB}[i] {
				t.Errorf("%s mapped the prime to %v", r.NS.Name, own.Reply[1])
			}
			fs, err := r.Flows(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if f.Orig[1] == own.Reply[1] {
					t.Errorf("%s tracks the far side's prime (%v): its ISP hop should have dropped it", r.NS.Name, f.Orig)
				}
			}
		}
		for _, c := range []struct {
			from, to *net.UDPConn
			dst, src netip.AddrPort
		}{{a, b, pubB, pubA}, {b, a, pubA, pubB}} {
			if _, err := c.from.WriteToUDPAddrPort([]byte("punch"), c.dst); err != nil {
				t.Fatal(err)
			}
			got, from, err := readOne(c.to)
			if err != nil {
				t.Fatalf("punch to %v: %v", c.dst, err)
			}
			if got != "punch" || from != c.src {
				t.Errorf("got %q from %v, want the punch from %v", got, from, c.src)
			}
		}
	})
}

// waitFlow polls a router's conntrack until an entry matches.
func waitFlow(ctx context.Context, r *Router, match func(Flow) bool) (Flow, error) {
	var found Flow
	err := Poll(ctx, probeTries*probeWait, probeWait/10, func(ctx context.Context) error {
		fs, err := r.Flows(ctx)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if match(f) {
				found = f
				return nil
			}
		}
		return fmt.Errorf("no such flow among %v", fs)
	})
	return found, err
}

// readOne reads one datagram from c.
func readOne(c *net.UDPConn) (string, netip.AddrPort, error) {
	if err := c.SetReadDeadline(time.Now().Add(probeTries * probeWait)); err != nil {
		return "", netip.AddrPort{}, err
	}
	buf := make([]byte, 64)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", from, errors.New("nothing arrived")
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}
