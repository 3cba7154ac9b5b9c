package path

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wait"
)

// idleTiming runs heartbeats fast, with no data traffic counting as active.
func idleTiming() Timing {
	tm := fastTiming()
	tm.Keepalive = 50 * time.Millisecond
	tm.ActiveWindow = time.Millisecond
	return tm
}

// Two idle peers keep their path with one side's heartbeats: the side that
// is pinged within its interval doesn't ping back (its pong refreshes both
// NATs), so an idle pair costs half the packets it did.
func TestIdlePathKeptByOneSide(t *testing.T) {
	f := newFabric()
	a, b := f.pair(t, idleTiming())
	pa, pb := a.m.Stats.PingsSent.Load(), b.m.Stats.PingsSent.Load()
	const heartbeats = 30
	wait.For(t, 30*time.Second, "heartbeats", func() bool {
		return a.m.Stats.PingsSent.Load()-pa+b.m.Stats.PingsSent.Load()-pb >= heartbeats
	})
	sa, sb := a.m.Stats.PingsSent.Load()-pa, b.m.Stats.PingsSent.Load()-pb
	// The two may start in step for an interval or two before one gives way.
	if min(sa, sb) > 3 {
		t.Errorf("both sides kept pinging: %d and %d heartbeats", sa, sb)
	}
	if a.m.Path(b.key).Path != PathDirect || b.m.Path(a.key).Path != PathDirect {
		t.Error("the idle path was lost")
	}
	t.Logf("%d heartbeats: %d from a, %d from b", sa+sb, sa, sb)
}

// The idle interval follows what it is set to (the NAT's measured
// lifetime) within its bounds; when a path dies while idle at a longer
// interval than the default, it drops back to the default, and later
// settings stay under half the interval that failed.
func TestIdleKeepaliveBounds(t *testing.T) {
	tm := idleTiming()
	f := newFabric()
	a, b := f.pair(t, tm)
	if got := a.m.SetIdleKeepalive(tm.Keepalive / 2); got != tm.Keepalive {
		t.Errorf("set below the default: got %v, want the default %v", got, tm.Keepalive)
	}
	long := 4 * tm.Keepalive
	if got := a.m.SetIdleKeepalive(long); got != long {
		t.Fatalf("set %v: got %v", long, got)
	}
	if got := a.m.addrTTL(); got < addrTTLKeepalives*long {
		t.Errorf("address TTL %v under %d idle intervals of %v", got, addrTTLKeepalives, long)
	}
	// b stops answering; a's idle heartbeats find the path dead.
	b.m.SetIdleKeepalive(time.Hour)
	f.mu.Lock()
	f.block[b.addr] = true
	f.mu.Unlock()
	wait.For(t, 30*time.Second, "a to lose its path to b", func() bool { return a.m.Path(b.key).Path != PathDirect })
	if got := a.m.idleKeepalive(); got != tm.Keepalive {
		t.Errorf("after the loss the interval is %v, want the default %v", got, tm.Keepalive)
	}
	if got := a.m.SetIdleKeepalive(long); got != long/2 {
		t.Errorf("after a loss at %v, setting it again gave %v, want the ceiling %v", long, got, long/2)
	}
}

// When the keeper's interval is longer than the other side's NAT allows
// (each side learns its own NAT's lifetime), the other side keeps the path
// at its shorter interval and the keeper stands back: the path is never
// left idle longer than the shorter interval.
func TestIdleShorterIntervalKeeps(t *testing.T) {
	tm := idleTiming()
	f := newFabric()
	a, b := f.pair(t, tm)
	keeper, other := a, b
	if ka, kb := a.m.sealer.Public(), b.m.sealer.Public(); bytes.Compare(ka[:], kb[:]) > 0 {
		keeper, other = b, a
	}
	keeper.m.SetIdleKeepalive(4 * tm.Keepalive)
	pk, po := keeper.m.Stats.PingsSent.Load(), other.m.Stats.PingsSent.Load()
	wait.For(t, 30*time.Second, "heartbeats", func() bool { return other.m.Stats.PingsSent.Load()-po >= 20 })
	if sk := keeper.m.Stats.PingsSent.Load() - pk; sk > 3 {
		t.Errorf("the keeper with the longer interval sent %d heartbeats while the other sent 20", sk)
	}
}
