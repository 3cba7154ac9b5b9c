package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// The stream that shows the existing path keeps carrying data through the
// outage: 20 s (past a keepalive interval and several heartbeats) at
// 256 KiB/s.
const (
	outageStreamBytes = 5 << 20
	outageStreamRate  = 256 << 10
)

// TestCoordinatorOutage: the coordinator crashes; nodes notice, and their
// existing direct path keeps carrying traffic; it comes back (same data
// directory) and the nodes reconnect and still see each other online.
func TestCoordinatorOutage(t *testing.T) {
	e := newEnv(t)
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.FullCone})
	a := e.node(t, sa.Hosts[0], "out-a")
	b := e.node(t, sb.Hosts[0], "out-b")
	mustDirect(t, a, b)

	if err := e.coord.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	err := waitCoordinator(t.Context(), false, pathTimeout, a, b)
	if err != nil {
		t.Errorf("nodes didn't notice the coordinator is gone: %v", err)
	} else {
		t.Logf("nodes noticed the outage in %.1f s", time.Since(killed).Seconds())
	}
	mustPing(t, a, b, 3)
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	to := mustStatus(t, b).Me().V4()
	res, err := netlab.Transfer{From: a.Host.NS, To: b.Host.NS, Addr: to, Size: outageStreamBytes, Rate: outageStreamRate, StallTimeout: stallTimeout}.Run(ctx)
	if err != nil {
		t.Errorf("TCP over the existing path during the outage: %v", err)
	} else {
		t.Logf("%d bytes streamed over %.1f s of outage, longest stall %.2f s", res.Bytes, res.Elapsed.Seconds(), res.MaxStall.Seconds())
	}
	if p, err := observe(t.Context(), a, b); err != nil || p.Path() != netlab.PathDirect {
		t.Errorf("path during the outage: %s (%v); want direct", p.Path(), err)
	}

	if err := e.coord.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := waitCoordinator(t.Context(), true, reconnectTimeout, a, b); err != nil {
		t.Fatalf("nodes didn't reconnect to the restarted coordinator: %v", err)
	}
	t.Logf("nodes reconnected %.1f s after the restart", time.Since(restarted).Seconds())
	mustDirect(t, a, b)
	mustPing(t, a, b, 3)
}

// waitCoordinator waits until every node reports its coordinator connection
// as connected (and its peers online) or not.
func waitCoordinator(ctx context.Context, connected bool, timeout time.Duration, nodes ...*netlab.Node) error {
	return netlab.Poll(ctx, timeout, netlab.PollInterval, func(ctx context.Context) error {
		var errs []error
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if st.Coordinator.Connected != connected {
				errs = append(errs, fmt.Errorf("%s: coordinator connected=%v", n.Name, st.Coordinator.Connected))
			}
			for _, p := range st.Peers {
				if connected && !p.Online {
					errs = append(errs, fmt.Errorf("%s: peer %s offline", n.Name, p.Name))
				}
			}
		}
		return errors.Join(errs...)
	})
}
