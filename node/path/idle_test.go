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

// keeperOf returns the side of a pair that keeps an idle path (the lower
// key), then the other.
func keeperOf(a, b *node) (keeper, other *node) {
	if ka, kb := a.m.sealer.Public(), b.m.sealer.Public(); bytes.Compare(ka[:], kb[:]) > 0 {
		return b, a
	}
	return a, b
}

// Two idle peers keep their path with one side's heartbeats: the other,
// pinged within its interval, pings only every sharedCheck intervals to
// see its own direction works, so an idle pair costs well under the two
// sides' full rate.
func TestIdlePathKeptByOneSide(t *testing.T) {
	t.Parallel()
	f := newFabric()
	keeper, other := keeperOf(f.pair(t, idleTiming()))
	pk, po := keeper.m.Stats.PingsSent.Load(), other.m.Stats.PingsSent.Load()
	const heartbeats = 24
	wait.For(t, 30*time.Second, "heartbeats", func() bool { return keeper.m.Stats.PingsSent.Load()-pk >= heartbeats })
	sk, so := keeper.m.Stats.PingsSent.Load()-pk, other.m.Stats.PingsSent.Load()-po
	// The other side may ping once or twice before the keeper's pings
	// settle it.
	if limit := sk/sharedCheck + 2; so > limit {
		t.Errorf("the side that doesn't keep the path sent %d heartbeats to the keeper's %d, want at most %d", so, sk, limit)
	}
	if keeper.m.Path(other.key).Path != PathDirect || other.m.Path(keeper.key).Path != PathDirect {
		t.Error("the idle path was lost")
	}
	t.Logf("keeper %d heartbeats, the other %d", sk, so)
}

// The idle interval follows what it is set to (the NAT's measured
// lifetime) within its bounds; when a path dies while idle at a longer
// interval than the default, it drops back to the default, and later
// settings stay under half the interval that failed.
func TestIdleKeepaliveBounds(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	tm := idleTiming()
	f := newFabric()
	a, b := f.pair(t, tm)
	keeper, other := keeperOf(a, b)
	keeper.m.SetIdleKeepalive(4 * tm.Keepalive)
	pk, po := keeper.m.Stats.PingsSent.Load(), other.m.Stats.PingsSent.Load()
	wait.For(t, 30*time.Second, "heartbeats", func() bool { return other.m.Stats.PingsSent.Load()-po >= 20 })
	// The other side kept the path at its own interval rather than waiting
	// for the keeper: it pings whenever the keeper has been silent for 1.5
	// of its intervals, about twice the keeper's rate (had it waited, it
	// would ping a quarter as often as the keeper).
	if sk := keeper.m.Stats.PingsSent.Load() - pk; sk >= 15 {
		t.Errorf("the keeper sent %d heartbeats while the other sent 20: the other side waited for it", sk)
	}
}
