package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// relayedMTU is the overlay MTU of a pair on the UDP relay: a 1500-byte
// link less IPv6 (40), UDP (8), WireGuard (32) and the relay frame's header
// (37), rounded down to WireGuard's 16-byte padding (node/pmtu.RelayMTU).
const relayedMTU = 1376

// relayedTransfer is each way's TCP transfer: thousands of full-size
// segments.
const relayedTransfer = 16 << 20

// TestRelayedNotFragmented: bulk TCP through the coordinator's UDP relay
// leaves no host in fragments, the relay's header included: between two
// random-port symmetric NATs (no direct path; both legs IPv4) and between
// an IPv6-only site and an IPv4-only one (one leg each). Every link is
// 1500 bytes. Each node shows the relayed path's MTU; fragments are counted
// where they would be made, at the sending hosts' IP layer (FragCreates,
// Ip6FragCreates), the coordinator's included.
func TestRelayedNotFragmented(t *testing.T) {
	e := newEnv(t)
	tok6, err := e.coord.TokenAt(t.Context(), e.coord.URL6())
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name   string
		a, b   netlab.Kind
		aToken string // "": the IPv4 token
	}{
		{"IPv4 legs", netlab.Symmetric, netlab.Symmetric, ""},
		{"IPv6 leg and IPv4 leg", netlab.IPv6Only, netlab.PortRestricted, tok6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := e.site(t, netlab.SiteConfig{Kind: tc.a}), e.site(t, netlab.SiteConfig{Kind: tc.b})
			var a *netlab.Node
			if tc.aToken != "" {
				a = e.nodeWithToken(t, sa.Hosts[0], fmt.Sprintf("frag%da", i), tc.aToken)
			} else {
				a = e.node(t, sa.Hosts[0], fmt.Sprintf("frag%da", i))
			}
			b := e.node(t, sb.Hosts[0], fmt.Sprintf("frag%db", i))
			p, err := waitUDPRelay(t.Context(), a, b)
			if err != nil {
				t.Fatalf("relayed path: %v", err)
			}
			t.Logf("%s relays via %s, %s via %s", a.Name, p.A.Endpoint, b.Name, p.B.Endpoint)
			if p.A.MTU != relayedMTU || p.B.MTU != relayedMTU {
				t.Errorf("MTU %d at %s, %d at %s; want %d through the relay", p.A.MTU, a.Name, p.B.MTU, b.Name, relayedMTU)
			}
			hosts := map[string]*netlab.Netns{a.Name: a.Host.NS, b.Name: b.Host.NS, "coordinator": e.coord.NS}
			before := fragments(t, hosts)
			for _, dir := range [][2]*netlab.Node{{a, b}, {b, a}} {
				ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
				r, err := netlab.Transfer{From: dir[0].Host.NS, To: dir[1].Host.NS, Addr: mustStatus(t, dir[1]).Me().V4(), Size: relayedTransfer, StallTimeout: stallTimeout}.Run(ctx)
				cancel()
				if err != nil {
					t.Fatalf("TCP %s→%s through the relay: %v (%d bytes)", dir[0].Name, dir[1].Name, err, r.Bytes)
				}
				t.Logf("TCP %s→%s through the relay: %.0f Mbit/s", dir[0].Name, dir[1].Name, mbit(r.Rate()))
			}
			after := fragments(t, hosts)
			for name := range hosts {
				if d := after[name] - before[name]; d != 0 {
					t.Errorf("%s made %d fragments while %d MiB crossed the relay each way, want none", name, d, relayedTransfer>>20)
				}
			}
		})
	}
}

// fragments reads how many IPv4 and IPv6 fragments each host's IP layer
// has made.
func fragments(t *testing.T, hosts map[string]*netlab.Netns) map[string]int {
	t.Helper()
	out := make(map[string]int, len(hosts))
	for name, ns := range hosts {
		v4, err := ns.Exec(t.Context(), "cat", "/proc/net/snmp")
		if err != nil {
			t.Fatalf("%s: /proc/net/snmp: %v", name, err)
		}
		v6, err := ns.Exec(t.Context(), "cat", "/proc/net/snmp6")
		if err != nil {
			t.Fatalf("%s: /proc/net/snmp6: %v", name, err)
		}
		out[name] = snmpField(t, v4, "Ip:", "FragCreates") + snmp6Field(t, v6, "Ip6FragCreates")
	}
	return out
}

// snmpField reads a counter from /proc/net/snmp, where a header line of
// names precedes a line of values, both starting with prefix.
func snmpField(t *testing.T, text, prefix, name string) int {
	t.Helper()
	var names []string
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatalf("/proc/net/snmp %s = %q: %v", name, f[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("/proc/net/snmp has no %s %s", prefix, name)
	return 0
}

// snmp6Field reads a counter from /proc/net/snmp6 (one "name value" a
// line).
func snmp6Field(t *testing.T, text, name string) int {
	t.Helper()
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("/proc/net/snmp6 %s = %q: %v", name, f[1], err)
			}
			return v
		}
	}
	t.Fatalf("/proc/net/snmp6 has no %s", name)
	return 0
}

// waitUDPRelay waits until a and b both relay through the UDP relay. A
// node whose UDP relay is slow to answer (a loaded machine) starts on the
// TCP relay and moves to the UDP relay once it binds: the fitting tested
// here is the UDP relay's.
func waitUDPRelay(ctx context.Context, a, b *netlab.Node) (pair, error) {
	var last pair
	err := netlab.Poll(ctx, pathTimeout, netlab.PollInterval, func(ctx context.Context) error {
		p, err := waitPath(ctx, a, b, pathTimeout, netlab.PathRelay)
		if err != nil {
			return err
		}
		last = p
		for _, side := range []netlab.PeerStatus{p.A, p.B} {
			if _, err := netip.ParseAddrPort(side.Endpoint); err != nil {
				return fmt.Errorf("%s relays via %q, not yet the UDP relay", side.Name, side.Endpoint)
			}
		}
		return nil
	})
	return last, err
}
