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

// reconnectGoal is how soon every node should be back once its coordinator
// answers again after an outage: node/control's longest wait between
// attempts is 3.75 s. Logged against, not asserted: real processes on a
// shared machine are no stopwatch.
const reconnectGoal = 5 * time.Second

// TestNodeRestartFromCachedMap: every coordinator is down and a node
// restarts, cleanly (an upgrade) and then killed (a crash): each time it
// comes up from its cached peer map, says so in status, and reaches its
// peer directly again through the cached candidates, with traffic over the
// overlay. When the coordinator comes back both reconnect and the live map
// replaces the cached one.
func TestNodeRestartFromCachedMap(t *testing.T) {
	e := newEnv(t)
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.FullCone})
	a := e.node(t, sa.Hosts[0], "pm-a")
	b := e.node(t, sb.Hosts[0], "pm-b")
	mustDirect(t, a, b)

	if err := e.coord.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := waitCoordinator(t.Context(), false, pathTimeout, a, b); err != nil {
		t.Fatalf("nodes didn't notice the coordinator is gone: %v", err)
	}
	for _, stop := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"stopped", b.Down},
		{"killed", func(context.Context) error { return b.Kill() }},
	} {
		t.Run(stop.name, func(t *testing.T) {
			if err := stop.do(t.Context()); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := b.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			st := mustStatus(t, b)
			if st.Coordinator.CachedMap == nil || st.Coordinator.Connected {
				t.Fatalf("%s restarted while the coordinator is down: coordinator %+v, want a cached map", b.Name, st.Coordinator)
			}
			if _, ok := st.Peer(a.Name); !ok {
				t.Fatalf("%s came up from its cache without %s: %+v", b.Name, a.Name, st.Peers)
			}
			t.Logf("%s runs since %s from the cached map of %s", b.Name, st.Coordinator.CachedMap.Since, st.Coordinator.CachedMap.Updated)
			mustDirect(t, a, b)
			t.Logf("direct again %.1f s after %s started", time.Since(start).Seconds(), b.Name)
			mustPing(t, b, a, 3)
			mustPing(t, a, b, 3)
		})
	}

	if err := e.coord.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := waitCoordinator(t.Context(), true, reconnectTimeout, a, b); err != nil {
		t.Fatalf("nodes didn't reconnect to the restarted coordinator: %v", err)
	}
	t.Logf("nodes reconnected %.1f s after the coordinator's start (goal: within %v)", time.Since(back).Seconds(), reconnectGoal)
	if st := mustStatus(t, b); st.Coordinator.CachedMap != nil {
		t.Errorf("%s still says it runs from the cached map once connected: %+v", b.Name, st.Coordinator)
	}
	mustDirect(t, a, b)
	mustPing(t, a, b, 3)
}
