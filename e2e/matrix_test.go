package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// Matrix traffic: a ping and a transfer big enough to cross many windows.
const (
	matrixPings    = 3
	matrixTransfer = 4 << 20
	// matrixTransferTimeout asks at least 0.5 Mbit/s of any path, relays
	// included, and bounds the matrix's run time when one is broken.
	matrixTransferTimeout = time.Minute
)

// expectedPath is the path a pair of NAT kinds should reach (see the shared
// NAT-traversal notes): any two endpoint-independent mappings punch, routers
// that remap when punched early included (the punch is ordered); a
// symmetric NAT punches only towards a side that accepts any source (no NAT,
// full cone); symmetric against a filtering cone or another symmetric NAT
// needs the relay, as does anything without UDP (the TCP relay).
func expectedPath(a, b netlab.Kind) string {
	switch {
	case a == netlab.UDPBlocked || b == netlab.UDPBlocked:
		return netlab.PathRelay
	case a == netlab.Symmetric || b == netlab.Symmetric:
		other := b
		if b == netlab.Symmetric {
			other = a
		}
		if other == netlab.Public || other == netlab.FullCone {
			return netlab.PathDirect
		}
		return netlab.PathRelay
	}
	return netlab.PathDirect
}

// upgradeWait is how long a relayed pair is watched for an upgrade to a
// direct path: a failed punch round (6 s), then the birthday technique (up
// to 25 s) or a TCP punch (up to 30 s).
const upgradeWait = 45 * time.Second

// matrixRow is one pair's outcome.
type matrixRow struct {
	A, B       netlab.Kind
	Expected   string
	Got        string // the path both report ("a/b" when they differ) and its transport
	TimeToPath time.Duration
	// FirstPacket is the time from the second node's start to the first
	// reply to traffic that was already waiting for it (firstPacket).
	FirstPacket time.Duration
	Ping        string // "ok", "FAIL" or "-" (not tried)
	TCP         string
	Note        string
	Pass        bool
}

// expected is the expectation as the table shows it: relay pairs are
// marked, they need the relay to pass.
func (r matrixRow) expected() string {
	if r.Expected == netlab.PathRelay {
		return "relay expected"
	}
	return r.Expected
}

// TestNATMatrix runs every pair of NAT kinds against one coordinator, in
// turn: two nodes come up, reach the expected path, and carry a ping and a
// TCP transfer. It prints the table, and writes it as Markdown to
// $MESHNODE_NATMATRIX when set (make natmatrix).
func TestNATMatrix(t *testing.T) {
	e := newEnv(t)
	kinds := netlab.Kinds()
	var rows []matrixRow
	for i, a := range kinds {
		for _, b := range kinds[i:] {
			name := fmt.Sprintf("%s-%s", a, b)
			row := matrixRow{A: a, B: b, Expected: expectedPath(a, b), Got: netlab.PathNone, Ping: "-", TCP: "-"}
			ran := false
			t.Run(name, func(t *testing.T) {
				ran = true
				runPair(t, e, len(rows)+1, &row)
			})
			if ran { // not filtered out by -run
				rows = append(rows, row)
			}
		}
	}
	table := renderMatrix(rows)
	t.Logf("NAT matrix:\n%s", table)
	if path := os.Getenv(envMatrix); path != "" {
		doc := matrixDocument(table, binaryVersion(e.bin), kernelRelease())
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Errorf("write %s: %v", path, err)
		} else {
			t.Logf("wrote %s", path)
		}
	}
}

// runPair fills row with one pair's outcome and fails t when it falls short
// of the expectation: relay-expected pairs pass direct too (recorded).
func runPair(t *testing.T, e *env, n int, row *matrixRow) {
	sa := e.site(t, netlab.SiteConfig{Kind: row.A})
	sb := e.site(t, netlab.SiteConfig{Kind: row.B})
	a := e.node(t, sa.Hosts[0], fmt.Sprintf("m%02da", n))
	nameB := fmt.Sprintf("m%02db", n)
	first := startFirstPacket(t, a, sb.Hosts[0], nameB)
	start := first.start
	firstErr := make(chan error, 1)
	go func() {
		d, err := first.wait(t.Context())
		row.FirstPacket = d
		firstErr <- err
	}()
	b := e.node(t, sb.Hosts[0], nameB)

	want := []string{netlab.PathDirect}
	if row.Expected == netlab.PathRelay {
		want = append(want, netlab.PathRelay)
	}
	p, err := waitPath(t.Context(), a, b, pathTimeout, want...)
	if p.A.Path != "" || p.B.Path != "" {
		row.Got = p.Path() + " (" + p.Transport() + ")"
	}
	if err != nil {
		row.Note = "no path"
		t.Errorf("%s vs %s: expected %s: %v", row.A, row.B, row.Expected, err)
		<-firstErr
		return
	}
	row.TimeToPath = time.Since(start)
	if err := <-firstErr; err != nil {
		t.Errorf("%s vs %s: no reply to the traffic waiting for %s: %v", row.A, row.B, b.Name, err)
	}
	if row.Expected == netlab.PathRelay && p.Path() == netlab.PathDirect {
		row.Note = "direct, better than expected"
	}
	if row.Expected == netlab.PathRelay && p.Path() == netlab.PathRelay {
		// The relay carries traffic at once; watch for the upgrade that a
		// hard-NAT technique (the birthday technique, TCP punching) makes.
		if q, err := waitPath(t.Context(), a, b, upgradeWait, netlab.PathDirect); err == nil {
			p = q
			row.Note = fmt.Sprintf("then direct (%s) after %.1f s", q.Transport(), time.Since(start).Seconds())
		}
	}
	t.Logf("%s vs %s: %s in %.1f s, first packet in %.2f s (%s via %s, %s via %s)", row.A, row.B, row.Got, row.TimeToPath.Seconds(),
		row.FirstPacket.Seconds(), a.Name, p.A.Endpoint, b.Name, p.B.Endpoint)

	row.Ping = "FAIL"
	to := mustStatus(t, b).Me().V4()
	if r, err := a.Host.NS.Ping(t.Context(), to, matrixPings); err != nil {
		t.Errorf("ping %s→%s over the overlay: %v\n%s", a.Name, to, err, r.Output)
	} else {
		row.Ping = "ok"
	}

	row.TCP = "FAIL"
	ctx, cancel := context.WithTimeout(t.Context(), matrixTransferTimeout)
	defer cancel()
	res, err := netlab.Transfer{From: a.Host.NS, To: b.Host.NS, Addr: to, Size: matrixTransfer, StallTimeout: stallTimeout}.Run(ctx)
	if err != nil {
		t.Errorf("TCP %s→%s over the overlay: %v", a.Name, to, err)
		row.Note = fmt.Sprintf("TCP: %d of %d bytes in %.0f s", res.Bytes, matrixTransfer, res.Elapsed.Seconds())
	} else {
		row.TCP = fmt.Sprintf("ok, %.0f Mbit/s", res.Rate()*8/1e6)
	}
	row.Pass = !t.Failed()
}
