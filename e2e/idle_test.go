package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// lifetimeTimeout bounds the nodes' measurement of their NATs'
	// mapping lifetime: the longest probe is 115 s idle, after the first
	// gathering and a 3 s warm-up.
	lifetimeTimeout = 4 * time.Minute
	// quietFor is the idle window counted: long enough for a few of the
	// longest keepalive intervals.
	quietFor = 3 * time.Minute
	// Goals per idle minute (issue "a quiet idle mesh"): an idle pair on
	// the wire, and one idle node to the coordinator.
	maxPairPerMinute  = 3
	maxCoordPerMinute = 10
)

// TestIdleQuiet: two idle nodes behind NATs with Linux's default UDP
// timeouts (30 s for unanswered flows, 120 s for answered ones) measure
// that lifetime, then space their keepalives inside it. Counted at the
// routers over three idle minutes, the pair exchanges at most 3 packets a
// minute and each node sends the coordinator at most 10; the first packet
// afterwards passes over the same path.
func TestIdleQuiet(t *testing.T) {
	if testing.Short() {
		t.Skipf("idles %v on purpose; skipped with -short", lifetimeTimeout+quietFor)
	}
	e := newEnv(t)
	cfg := netlab.SiteConfig{Kind: netlab.PortRestricted}
	sa, sb := e.site(t, cfg), e.site(t, cfg)
	a := e.node(t, sa.Hosts[0], "quiet-a")
	b := e.node(t, sb.Hosts[0], "quiet-b")
	before := mustDirect(t, a, b)

	start := time.Now()
	for _, n := range []*netlab.Node{a, b} {
		err := netlab.Poll(t.Context(), lifetimeTimeout, time.Second, func(ctx context.Context) error {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if st.Self.NAT.MappingLifetime == "" {
				return errors.New("mapping lifetime not measured yet")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		nat := mustStatus(t, n).Self.NAT
		t.Logf("%s: idle mappings outlive %s; idle keepalive %s (measured in %v)", n.Name, nat.MappingLifetime, nat.IdleKeepalive, time.Since(start).Round(time.Second))
	}

	ca, err := sa.Router.Count(t.Context(), sa.Hosts[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := sb.Router.Count(t.Context(), sb.Hosts[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	stayIdle(t, quietFor)
	na, err := ca.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	nb, err := cb.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	minutes := quietFor.Minutes()
	pair := float64(na.ToPeers+na.FromPeers) / minutes
	t.Logf("idle %v: the pair %.1f packets/min on the wire (a sent %d, received %d); to the coordinator a %.1f/min (TCP %.1f), b %.1f/min (TCP %.1f); from it %.1f and %.1f/min",
		quietFor, pair, na.ToPeers, na.FromPeers, float64(na.ToCoordinator)/minutes, float64(na.ToCoordinatorTCP)/minutes,
		float64(nb.ToCoordinator)/minutes, float64(nb.ToCoordinatorTCP)/minutes,
		float64(na.FromCoordinator)/minutes, float64(nb.FromCoordinator)/minutes)
	if pair > maxPairPerMinute {
		t.Errorf("the idle pair exchanged %.1f packets a minute, want at most %d", pair, maxPairPerMinute)
	}
	for _, c := range []struct {
		name string
		n    netlab.Counts
	}{{a.Name, na}, {b.Name, nb}} {
		if per := float64(c.n.ToCoordinator) / minutes; per > maxCoordPerMinute {
			t.Errorf("%s sent the coordinator %.1f packets a minute, want at most %d", c.name, per, maxCoordPerMinute)
		}
	}

	firstPacketPasses(t, a, b, before, quietFor)
}
