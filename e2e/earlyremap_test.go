package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// quietRecovery bounds the return of a direct path that an early packet
// disturbed: three missed heartbeats (6 s), a failed round (up to 12 s),
// the quiet period (35 s), a round.
const quietRecovery = 2 * time.Minute

// earlyPair is two nodes, each behind a router that remaps when punched
// early (no WAN input filter), and the public address each router gives
// its node's port.
type earlyPair struct {
	sa, sb     *netlab.Site
	a, b       *netlab.Node
	pubA, pubB netip.AddrPort
}

func newEarlyPair(t *testing.T, e *env) earlyPair {
	t.Helper()
	var p earlyPair
	p.sa = e.site(t, netlab.SiteConfig{Kind: netlab.EarlyRemap})
	p.sb = e.site(t, netlab.SiteConfig{Kind: netlab.EarlyRemap})
	p.a = e.node(t, p.sa.Hosts[0], "early-a")
	p.b = e.node(t, p.sb.Hosts[0], "early-b")
	p.pubA = netip.AddrPortFrom(p.sa.Router.WAN(), netlab.DefaultNodePort)
	p.pubB = netip.AddrPortFrom(p.sb.Router.WAN(), netlab.DefaultNodePort)
	return p
}

// TestEarlyRemap: two homes behind routers with no WAN input filter (a
// peer's punch that arrives first is kept by the router and moves the
// host's flow to that peer onto another port) go direct on the ports STUN
// saw, having primed their NATs with low-TTL pings, and carry a ping.
func TestEarlyRemap(t *testing.T) {
	e := newEnv(t)
	p := newEarlyPair(t, e)
	got := mustDirect(t, p.a, p.b)
	if got.A.Endpoint != p.pubB.String() || got.B.Endpoint != p.pubA.String() {
		t.Errorf("paths via %s and %s, want the mappings STUN saw, %s and %s (a moved port means an early packet got in)",
			got.A.Endpoint, got.B.Endpoint, p.pubB, p.pubA)
	}
	// The side that hears the other's ready first pings at once: at least
	// the other primed.
	if primes := mustStatus(t, p.a).Counters["punch_primes"] + mustStatus(t, p.b).Counters["punch_primes"]; primes == 0 {
		t.Error("neither node sent a low-TTL prime")
	}
	mustPing(t, p.a, p.b, 3)
}

// TestEarlyRemapRecovers: the pair is direct when a's router loses its
// state while a's packets don't get out, so b's next packet arrives first
// and is kept there: a's flow to b moves to another port, which b's router
// keeps in turn, and the path dies both ways. The nodes notice, fail one
// ordered round, go quiet until the routers forget those packets, and punch
// again: direct, on the port a's router now gives a's newer flows.
func TestEarlyRemapRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a NAT's UDP timeout (about a minute)")
	}
	e := newEnv(t)
	p := newEarlyPair(t, e)
	mustDirect(t, p.a, p.b)
	// Traffic keeps the path's heartbeats at their active rate.
	probe, err := netlab.StartProber(t.Context(), p.a.Host.NS, p.b.Host.NS, mustStatus(t, p.b).Me().V4())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)

	ctx := t.Context()
	r := p.sa.Router
	release, err := r.HoldOutbound(ctx, p.pubB)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.FlushConntrack(ctx); err != nil {
		t.Fatal(err)
	}
	err = netlab.Poll(ctx, pathTimeout, netlab.PollInterval, func(ctx context.Context) error {
		fs, err := r.Flows(ctx)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if f.Orig == [2]netip.AddrPort{p.pubB, p.pubA} {
				return nil
			}
		}
		return fmt.Errorf("%s keeps no packet from b yet", r.NS.Name)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := waitPath(ctx, p.a, p.b, pathTimeout, netlab.PathRelay, netlab.PathNone); err != nil {
		t.Fatalf("the disturbed path didn't die: %v", err)
	}
	lost := time.Since(t0)
	got, err := waitPath(ctx, p.a, p.b, quietRecovery, netlab.PathDirect)
	if err != nil {
		t.Fatalf("no direct path again: %v", err)
	}
	t.Logf("path lost after %.1f s, direct again after %.1f s: a→b via %s, b→a via %s",
		lost.Seconds(), time.Since(t0).Seconds(), got.A.Endpoint, got.B.Endpoint)
	mustPing(t, p.a, p.b, 3)
}
