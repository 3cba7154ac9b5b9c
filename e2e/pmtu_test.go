package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// Path MTU scenario traffic: bulk TCP each way, alternating with the same
// transfer over a full-size path that stays up alongside, so both see the
// same machine (the lab shares its CPUs with everything else on it); the
// median of each series is kept.
const (
	pmtuTransfer = 128 << 20
	pmtuRuns     = 5
	// pmtuTimeout bounds finding both sides' path MTU: two probe rounds of
	// a second each once the path is direct, with room for a slow machine.
	pmtuTimeout = 30 * time.Second
	// pmtuTolerance is how much slower than the full-size path a small
	// link may be: its packets carry 7% (1400) to 15% (1280) less.
	pmtuTolerance = 0.20
)

// pmtuScenario is one home's uplink.
type pmtuScenario struct {
	name       string
	uplink     int  // the uplink's MTU; 0: none (1500)
	dropTooBig bool // ICMP "fragmentation needed" dropped: a black hole
	// wantMTU is the overlay MTU both sides should find: the uplink less
	// 60 bytes (IPv4, UDP, WireGuard), rounded down to WireGuard's
	// 16-byte padding.
	wantMTU int
}

// pmtuPair is two nodes across a scenario's topology.
type pmtuPair struct {
	sc         pmtuScenario
	a, b       *netlab.Node
	toA, toB   netip.Addr
	mtuA, mtuB int           // what each side found
	found      time.Duration // from the direct path to both MTUs
}

// pmtuResult is one scenario's figures, beside the full-size path's.
type pmtuResult struct {
	pair                 *pmtuPair
	aToB, bToA           float64 // median goodput, bytes/s
	fullAToB, fullBToA   float64 // the full-size path's, measured alternately
	counters, countersRx string
}

// TestPathMTU: a home behind a 1400- or 1280-byte uplink (a DoubleNAT home
// whose line to its CGN is small), with ICMP "fragmentation needed"
// delivered and dropped, talks to a home behind an ordinary router. Both
// nodes find the path's MTU, and bulk TCP crosses the overlay both ways,
// at a rate compared with the same topology without the small link. Rates
// are printed, not asserted (the machine is shared); the transfers must
// complete.
func TestPathMTU(t *testing.T) {
	e := newEnv(t)
	full := startPMTUPair(t, e, 0, pmtuScenario{name: "full-size path", wantMTU: 1420})
	scenarios := []pmtuScenario{
		{"1400-byte uplink, ICMP delivered", 1400, false, 1328},
		{"1400-byte uplink, ICMP dropped", 1400, true, 1328},
		{"1280-byte uplink, ICMP delivered", 1280, false, 1216},
		{"1280-byte uplink, ICMP dropped", 1280, true, 1216},
	}
	var results []pmtuResult
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			p := startPMTUPair(t, e, i+1, sc)
			checkTooBig(t, e, p)
			r := pmtuResult{pair: p}
			var rates [4][]float64 // a→b, full a→b, b→a, full b→a
			for range pmtuRuns {
				rates[0] = append(rates[0], transferRate(t, p.a, p.b, p.toB))
				rates[1] = append(rates[1], transferRate(t, full.a, full.b, full.toB))
				rates[2] = append(rates[2], transferRate(t, p.b, p.a, p.toA))
				rates[3] = append(rates[3], transferRate(t, full.b, full.a, full.toA))
			}
			r.aToB, r.fullAToB, r.bToA, r.fullBToA = median(rates[0]), median(rates[1]), median(rates[2]), median(rates[3])
			r.counters, r.countersRx = mtuCounters(t, p.a), mtuCounters(t, p.b)
			t.Logf("%s: a→b %.0f Mbit/s (full-size path %.0f), b→a %.0f Mbit/s (%.0f); %s: %s; %s: %s", sc.name,
				mbit(r.aToB), mbit(r.fullAToB), mbit(r.bToA), mbit(r.fullBToA), p.a.Name, r.counters, p.b.Name, r.countersRx)
			results = append(results, r)
		})
	}
	t.Logf("path MTU scenarios (bulk TCP, %d MiB, median of %d each way, alternating with the full-size path; full-size MTU found after %.1f s):\n%s",
		pmtuTransfer>>20, pmtuRuns, full.found.Seconds(), renderPMTU(results))
}

// startPMTUPair starts a pair across sc's topology and waits for the direct
// path and both MTUs. A wrong MTU fails the test, and the pair still
// carries the transfers (a binary without discovery shows what it does).
func startPMTUPair(t *testing.T, e *env, n int, sc pmtuScenario) *pmtuPair {
	t.Helper()
	p := &pmtuPair{sc: sc}
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.DoubleNAT, UplinkMTU: sc.uplink, DropTooBig: sc.dropTooBig})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	p.a = e.node(t, sa.Hosts[0], fmt.Sprintf("mtu%da", n))
	p.b = e.node(t, sb.Hosts[0], fmt.Sprintf("mtu%db", n))
	mustDirect(t, p.a, p.b)
	start := time.Now()
	err := netlab.Poll(t.Context(), pmtuTimeout, netlab.PollInterval, func(ctx context.Context) error {
		q, err := observe(ctx, p.a, p.b)
		if err != nil {
			return err
		}
		p.mtuA, p.mtuB = q.A.MTU, q.B.MTU
		if q.A.MTU != sc.wantMTU || q.B.MTU != sc.wantMTU {
			return fmt.Errorf("MTU %d at %s, %d at %s", q.A.MTU, p.a.Name, q.B.MTU, p.b.Name)
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: path MTU %d on both sides: %v", sc.name, sc.wantMTU, err)
	}
	p.found = time.Since(start)
	t.Logf("%s: MTU %d/%d found %.1f s after the direct path", sc.name, p.mtuA, p.mtuB, p.found.Seconds())
	p.toA, p.toB = mustStatus(t, p.a).Me().V4(), mustStatus(t, p.b).Me().V4()
	return p
}

// checkTooBig pings b's overlay addresses from a's host with don't-fragment:
// a packet of the path's MTU crosses, a larger one is answered by a's node
// with ICMP "fragmentation needed" or ICMPv6 "packet too big" naming it
// (never less than 1280 for IPv6), as a router would.
func checkTooBig(t *testing.T, e *env, p *pmtuPair) {
	t.Helper()
	for _, addr := range mustStatus(t, p.b).Self.Addresses {
		hdr, want, family := 20+8, p.sc.wantMTU, "-4" // IPv4 and ICMP headers
		if addr.Is6() {
			hdr, want, family = 40+8, max(p.sc.wantMTU, 1280), "-6"
		}
		ping := func(size int) (string, error) {
			return p.a.Host.NS.Exec(t.Context(), e.lab.Tools().Ping, family, "-n", "-c", "2", "-W", "2", "-M", "do", "-s", fmt.Sprint(size-hdr), addr.String())
		}
		if out, err := ping(min(want, p.sc.wantMTU)); err != nil {
			t.Errorf("a %d-byte packet to %v: %v\n%s", min(want, p.sc.wantMTU), addr, err, out)
		}
		out, err := ping(1420)
		if err == nil || !strings.Contains(out, fmt.Sprintf("mtu = %d", want)) && !strings.Contains(out, fmt.Sprintf("mtu=%d", want)) {
			t.Errorf("a 1420-byte packet to %v: want it refused with MTU %d: %v\n%s", addr, want, err, out)
		}
	}
}

// transferRate moves pmtuTransfer bytes over TCP from one node's host to
// another's overlay address and returns the goodput; a transfer that fails
// fails the test and counts as 0.
func transferRate(t *testing.T, from, to *netlab.Node, addr netip.Addr) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	r, err := netlab.Transfer{From: from.Host.NS, To: to.Host.NS, Addr: addr, Size: pmtuTransfer, StallTimeout: stallTimeout}.Run(ctx)
	if err != nil {
		t.Errorf("TCP %s→%s: %v (%d of %d bytes in %.1f s)", from.Name, to.Name, err, r.Bytes, pmtuTransfer, r.Elapsed.Seconds())
		return 0
	}
	return r.Rate()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mbit(bytesPerSecond float64) float64 { return bytesPerSecond * 8 / 1e6 }

// mtuCounters are a node's path MTU counters, for the log.
func mtuCounters(t *testing.T, n *netlab.Node) string {
	st := mustStatus(t, n)
	var parts []string
	for _, k := range []string{"gso_batches_split", "mtu_syn_clamped", "mtu_too_big_sent", "mtu_oversize_sent", "mtu_oversize_dropped"} {
		parts = append(parts, fmt.Sprintf("%s=%d", k, st.Counters[k]))
	}
	return strings.Join(parts, " ")
}

// renderPMTU renders the scenarios as a Markdown table.
func renderPMTU(rows []pmtuResult) string {
	var b strings.Builder
	b.WriteString("| uplink | ICMP | MTU found (a/b) | found after | TCP a→b (full-size path) | TCP b→a (full-size path) | ratio a→b / b→a |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		p := r.pair
		icmp := "delivered"
		if p.sc.dropTooBig {
			icmp = "dropped"
		}
		ratio := "-"
		if r.fullAToB > 0 && r.fullBToA > 0 {
			ra, rb := r.aToB/r.fullAToB, r.bToA/r.fullBToA
			ratio = fmt.Sprintf("%.0f%% / %.0f%%", 100*ra, 100*rb)
			if ra < 1-pmtuTolerance || rb < 1-pmtuTolerance {
				ratio += fmt.Sprintf(" (more than %.0f%% slower)", 100*pmtuTolerance)
			}
		}
		fmt.Fprintf(&b, "| %d | %s | %d/%d | %.1f s | %.0f (%.0f) Mbit/s | %.0f (%.0f) Mbit/s | %s |\n",
			p.sc.uplink, icmp, p.mtuA, p.mtuB, p.found.Seconds(), mbit(r.aToB), mbit(r.fullAToB), mbit(r.bToA), mbit(r.fullBToA), ratio)
	}
	return b.String()
}
