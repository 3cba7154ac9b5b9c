package e2e

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// natIdleTimeout is the routers' conntrack UDP timeout: as short as
	// the shortest home gateways measured (see the NAT-traversal notes).
	natIdleTimeout = 20 * time.Second
	// idleFor is how long the nodes sit idle: six NAT timeouts, and past
	// WireGuard's 120 s rekey time.
	idleFor = 2 * time.Minute
)

// TestKeepalive: two nodes behind NATs that forget a UDP mapping after 20 s
// of silence stay idle for 2 minutes; the first packet afterwards passes,
// over the same endpoints (the nodes' keepalives held the mappings, no new
// punch was needed).
func TestKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skipf("idles %v on purpose; skipped with -short", idleFor)
	}
	e := newEnv(t)
	cfg := netlab.SiteConfig{Kind: netlab.PortRestricted, UDPTimeout: natIdleTimeout}
	sa, sb := e.site(t, cfg), e.site(t, cfg)
	a := e.node(t, sa.Hosts[0], "idle-a")
	b := e.node(t, sb.Hosts[0], "idle-b")
	before := mustDirect(t, a, b)

	t.Logf("idle for %v behind %v NAT timeouts", idleFor, natIdleTimeout)
	stayIdle(t, idleFor)
	firstPacketPasses(t, a, b, before, idleFor)
}

// stayIdle waits d: the scenario is idleness itself, with nothing to wait
// for but time.
func stayIdle(t *testing.T, d time.Duration) {
	t.Helper()
	idle := time.NewTimer(d)
	select {
	case <-idle.C:
	case <-t.Context().Done():
		idle.Stop()
		t.Fatal("test ended while idle")
	}
}

// firstPacketPasses checks that after idling, the first ping from a to b
// passes, over the direct paths the pair had before (their keepalives held
// the mappings: no new punch was needed).
func firstPacketPasses(t *testing.T, a, b *netlab.Node, before pair, idle time.Duration) {
	t.Helper()
	to := mustStatus(t, b).Me().V4()
	r, err := a.Host.NS.Ping(t.Context(), to, 1)
	if err != nil || r.Received != 1 {
		t.Errorf("first ping after %v idle: %v\n%s", idle, err, r.Output)
	}
	after, err := observe(t.Context(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, before, after, path string }{
		{a.Name + "→" + b.Name, before.A.Endpoint, after.A.Endpoint, after.A.Path},
		{b.Name + "→" + a.Name, before.B.Endpoint, after.B.Endpoint, after.B.Path},
	} {
		if c.after != c.before || c.path != netlab.PathDirect {
			t.Errorf("%s: path %s via %s after idling, was direct via %s: the mapping was lost", c.name, c.path, c.after, c.before)
		}
	}
}
