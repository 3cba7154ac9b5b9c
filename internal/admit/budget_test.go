package admit

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// testBudgets: 4 tokens, one regained every 100 ms.
func testBudgets(sources int) *Budgets {
	return NewBudgets(BudgetLimits{Rate: 10, Burst: 4, Sources: sources, Idle: time.Minute})
}

const testRefill = 100 * time.Millisecond

var (
	ipA = netip.MustParseAddr("198.18.0.1")
	ipB = netip.MustParseAddr("198.18.0.2")
	ipC = netip.MustParseAddr("198.18.0.3")
	ipD = netip.MustParseAddr("198.18.0.4")
	t0  = time.Unix(1000, 0)
)

func TestBudgetsBurstAndRefill(t *testing.T) {
	b := testBudgets(16)
	for i := range 4 {
		if b.Spent(ipA, t0) {
			t.Fatalf("spent before request %d of a burst", i)
		}
		if !b.Allow(ipA, t0) {
			t.Fatalf("request %d of a burst refused", i)
		}
	}
	if !b.Spent(ipA, t0) || b.Allow(ipA, t0) {
		t.Fatal("request past the burst allowed")
	}
	if b.Spent(ipB, t0) || !b.Allow(ipB, t0) {
		t.Fatal("another IPv4 address was limited by the first")
	}
	if b.Spent(ipA, t0.Add(testRefill)) || !b.Allow(ipA, t0.Add(testRefill)) {
		t.Fatal("no token after one refill interval")
	}
}

// Spent only looks: it takes no token and adds no source.
func TestBudgetsSpentTakesNothing(t *testing.T) {
	b := testBudgets(16)
	for range 10 {
		if b.Spent(ipA, t0) {
			t.Fatal("a new source is spent")
		}
	}
	if n := b.Len(); n != 0 {
		t.Fatalf("Spent added %d sources", n)
	}
	b.Allow(ipA, t0)
	for range 10 {
		b.Spent(ipA, t0)
	}
	for i := range 3 {
		if !b.Allow(ipA, t0) {
			t.Fatalf("token %d of the 3 left was taken by Spent", i+2)
		}
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"198.18.0.1", "::ffff:198.18.0.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"fe80::1%eth0", "fe80::2%eth1"},
	} {
		if ka, kb := Source(netip.MustParseAddr(tc.a)), Source(netip.MustParseAddr(tc.b)); ka != kb {
			t.Errorf("%s is source %v, %s is %v: want one source", tc.a, ka, tc.b, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"198.18.0.1", "198.18.0.2"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
	} {
		if Source(netip.MustParseAddr(tc.a)) == Source(netip.MustParseAddr(tc.b)) {
			t.Errorf("%s and %s are one source, want two", tc.a, tc.b)
		}
	}
}

// A full table makes room for a new source by forgetting the one seen
// longest ago, not the oldest entry and not the newcomer.
func TestBudgetsEvictLeastRecentlySeen(t *testing.T) {
	b := testBudgets(3)
	for _, ip := range []netip.Addr{ipA, ipB, ipC} {
		b.Allow(ip, t0)
	}
	for range 3 {
		b.Allow(ipA, t0) // a is the first added, but seen last, and out of tokens
	}
	if !b.Allow(ipD, t0) {
		t.Fatal("a new source was refused by a full table")
	}
	if b.Len() != 3 {
		t.Errorf("table holds %d sources, want at most 3", b.Len())
	}
	if b.Allow(ipA, t0) {
		t.Error("a lost its entry and got a fresh bucket")
	}
	b.Allow(ipC, t0)
	b.Allow(ipD, t0)
	if b.Spent(ipB, t0) || b.Len() != 3 {
		t.Error("b, seen longest ago, was kept")
	}
}

func TestBudgetsForgetIdleSources(t *testing.T) {
	b := testBudgets(16)
	b.Allow(ipA, t0)
	b.Allow(ipB, t0.Add(2*time.Minute))
	if n := b.Len(); n != 1 {
		t.Fatalf("idle source kept: %d sources", n)
	}
}

// A source is never forgotten before its bucket has refilled: that would
// hand it a fresh budget early.
func TestBudgetsIdleCoversTheRefill(t *testing.T) {
	b := NewBudgets(BudgetLimits{Rate: rate.Every(time.Minute), Burst: 10, Sources: 16, Idle: time.Second})
	for range 10 {
		b.Allow(ipA, t0)
	}
	b.Allow(ipB, t0.Add(2*time.Minute)) // sweeps what is idle
	if n := b.Len(); n != 2 {
		t.Fatalf("after 2 of the 10 minutes a refill takes, %d sources, want a kept", n)
	}
	b.Allow(ipB, t0.Add(11*time.Minute))
	if n := b.Len(); n != 1 {
		t.Fatalf("after a whole refill, %d sources, want a forgotten", n)
	}
}
