package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// restartRounds is how many times each kind of restart is made: a few
// figures, not one lucky one.
const restartRounds = 3

// TestPeerRestartWithTrafficWaiting: a and b are direct, and a sends to b
// throughout (a probe every 50 ms). b restarts with its state, as after a
// crash or a reboot (killed: it says goodbye to nobody) and as after an
// upgrade (stopped cleanly). The traffic waiting for b must be answered
// once b is back: a keeps a WireGuard session b no longer has, so one side
// must start a handshake without waiting out a timer. The time from b's
// start to the first reply is logged for each restart.
func TestPeerRestartWithTrafficWaiting(t *testing.T) {
	e := newEnv(t)
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	a := e.node(t, sa.Hosts[0], "rs-a")
	b := e.node(t, sb.Hosts[0], "rs-b")
	mustDirect(t, a, b)
	probe, err := netlab.StartProber(t.Context(), a.Host.NS, b.Host.NS, mustStatus(t, b).Me().V4())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)
	if _, err := probe.RecoveredAfter(t.Context(), time.Now(), pathTimeout); err != nil {
		t.Fatalf("no probe answered before the restarts: %v", err)
	}

	var figures []string
	for _, stop := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"killed", func(context.Context) error { return b.Kill() }},
		{"stopped", b.Down},
	} {
		for i := range restartRounds {
			t.Run(fmt.Sprintf("%s-%d", stop.name, i+1), func(t *testing.T) {
				mustDirect(t, a, b)
				if err := stop.do(t.Context()); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := b.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				d, err := probe.RecoveredAfter(t.Context(), start, pathTimeout)
				if err != nil {
					t.Fatalf("no reply to the traffic waiting for %s after it restarted: %v", b.Name, err)
				}
				p, _ := observe(t.Context(), a, b)
				figures = append(figures, fmt.Sprintf("%s %d: first reply %.2f s after the start (path %s)", stop.name, i+1, d.Seconds(), p.Path()))
			})
		}
	}
	t.Logf("time to the first reply after %s restarted:\n%s", b.Name, strings.Join(figures, "\n"))
}
