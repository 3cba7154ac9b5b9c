package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// The stream that must survive each mapping change: paced, so it runs for
// streamBytes/streamRate = 16 s and the event lands in its middle.
const (
	streamBytes = 16 << 20
	streamRate  = 1 << 20
	// eventAfter is how much the receiver must have got before the event.
	eventAfter = 2 << 20
	// recoveryTimeout bounds the path's recovery: a dead path is noticed
	// after three missed heartbeats (6 s), then a punch round follows.
	recoveryTimeout = time.Minute
)

// TestMappingChange: while a TCP stream crosses the overlay, the NAT of one
// side forgets its mappings, gets a new public address, and restarts. The
// stream survives each (all bytes arrive, checked), and the time from each
// event to the first UDP probe that crosses the overlay again is printed.
func TestMappingChange(t *testing.T) {
	e := newEnv(t)
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	a := e.node(t, sa.Hosts[0], "map-a")
	b := e.node(t, sb.Hosts[0], "map-b")
	mustDirect(t, a, b)
	to := mustStatus(t, b).Me().V4()
	probe, err := netlab.StartProber(t.Context(), a.Host.NS, b.Host.NS, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)

	r := sa.Router
	var summary []string
	for _, ev := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"conntrack flush", r.FlushConntrack},
		{"public address change", func(ctx context.Context) error { return r.ChangeWAN(ctx, netlab.NewWANAddr(sa.Index)) }},
		{"NAT restart", r.Restart},
	} {
		t.Run(ev.name, func(t *testing.T) {
			line := streamThrough(t, probe, a, b, ev.do)
			summary = append(summary, fmt.Sprintf("%-22s %s", ev.name+":", line))
		})
	}
	for _, l := range summary {
		t.Log(l)
	}
}

// streamThrough runs the stream, fires event in its middle, and returns a
// line with the recovery time and the stream's outcome.
func streamThrough(t *testing.T, probe *netlab.Prober, a, b *netlab.Node, event func(context.Context) error) string {
	before, err := observe(t.Context(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	var received atomic.Int64
	type result struct {
		res netlab.TransferResult
		err error
	}
	done := make(chan result, 1)
	tr := netlab.Transfer{From: a.Host.NS, To: b.Host.NS, Addr: mustStatus(t, b).Me().V4(), Size: streamBytes, Rate: streamRate, StallTimeout: recoveryTimeout, Received: &received}
	go func() {
		res, err := tr.Run(ctx)
		done <- result{res, err}
	}()
	if err := netlab.Poll(ctx, pathTimeout, netlab.PollInterval, func(context.Context) error {
		if n := received.Load(); n < eventAfter {
			return fmt.Errorf("stream has carried %d bytes", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("stream didn't start: %v", err)
	}

	if err := event(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	recovery, recErr := probe.RecoveredAfter(ctx, t0, recoveryTimeout)
	if recErr != nil {
		t.Errorf("path didn't recover: %v", recErr)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatalf("stream still running after %v", transferTimeout)
	}
	if r.err != nil {
		t.Errorf("stream didn't survive: %v", r.err)
	}
	after, err := waitPath(t.Context(), a, b, pathTimeout, netlab.PathDirect)
	if err != nil {
		t.Errorf("no direct path after the event: %v", err)
	}
	line := fmt.Sprintf("recovered in %.2f s; stream %d/%d bytes in %.1f s, longest stall %.2f s; %s's endpoint %s → %s",
		recovery.Seconds(), r.res.Bytes, streamBytes, r.res.Elapsed.Seconds(), r.res.MaxStall.Seconds(),
		a.Name, before.B.Endpoint, after.B.Endpoint)
	t.Log(line)
	return line
}
