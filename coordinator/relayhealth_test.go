package coordinator

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// testKey is a distinct key per byte.
func testKey(b byte) crypto.PublicKey { return crypto.PublicKey{0: b} }

// TestSuspensionPolicy runs report sequences against the policy on a
// clock the test sets: each step reports at its time and checks the
// verdict and the suspension's length.
func TestSuspensionPolicy(t *testing.T) {
	t.Parallel()
	policy := suspendPolicy{base: time.Minute, max: 30 * time.Minute, forgive: 30 * time.Minute, window: time.Minute, pending: 2}
	relay, other := testKey(1), testKey(2)
	a, b, c, d := testKey(10), testKey(11), testKey(12), testKey(13)
	type step struct {
		at       time.Duration // since the start
		relay    crypto.PublicKey
		from     crypto.PublicKey
		peer     *crypto.PublicKey
		want     verdict
		wantFor  time.Duration // the suspension's length, when suspended
		wantTill time.Duration // whether relay is suspended right after the step: until, since the start; 0: not
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"an echo report suspends at once, for the base", []step{
			{0, relay, a, nil, verdictSuspended, time.Minute, time.Minute},
		}},
		{"reports while suspended change nothing", []step{
			{0, relay, a, nil, verdictSuspended, time.Minute, time.Minute},
			{30 * time.Second, relay, b, nil, verdictStale, 0, time.Minute},
			{59 * time.Second, relay, b, &a, verdictStale, 0, time.Minute},
		}},
		{"repeated suspensions double, up to the cap", []step{
			{0, relay, a, nil, verdictSuspended, time.Minute, time.Minute},
			{time.Minute, relay, a, nil, verdictSuspended, 2 * time.Minute, 3 * time.Minute},
			{3 * time.Minute, relay, a, nil, verdictSuspended, 4 * time.Minute, 7 * time.Minute},
			{7 * time.Minute, relay, a, nil, verdictSuspended, 8 * time.Minute, 15 * time.Minute},
			{15 * time.Minute, relay, a, nil, verdictSuspended, 16 * time.Minute, 31 * time.Minute},
			{31 * time.Minute, relay, a, nil, verdictSuspended, 30 * time.Minute, 61 * time.Minute},
			{61 * time.Minute, relay, a, nil, verdictSuspended, 30 * time.Minute, 91 * time.Minute},
		}},
		{"a relay quiet for the forgiving time starts over", []step{
			{0, relay, a, nil, verdictSuspended, time.Minute, time.Minute},
			{time.Minute, relay, a, nil, verdictSuspended, 2 * time.Minute, 3 * time.Minute},
			{33 * time.Minute, relay, a, nil, verdictSuspended, time.Minute, 34 * time.Minute},
		}},
		{"relays are judged apart", []step{
			{0, relay, a, nil, verdictSuspended, time.Minute, time.Minute},
			{time.Second, other, a, nil, verdictSuspended, time.Minute, time.Minute},
		}},
		{"a peer's report alone waits: a dead peer never gets the relay blamed", []step{
			{0, relay, a, &b, verdictUnconfirmed, 0, 0},
			{10 * time.Second, relay, a, &b, verdictUnconfirmed, 0, 0},
			{20 * time.Second, relay, c, &b, verdictUnconfirmed, 0, 0},
		}},
		{"both ends of a pair report each other: suspended", []step{
			{0, relay, a, &b, verdictUnconfirmed, 0, 0},
			{20 * time.Second, relay, b, &a, verdictSuspended, time.Minute, 80 * time.Second},
		}},
		{"the other end's report after the window waits anew", []step{
			{0, relay, a, &b, verdictUnconfirmed, 0, 0},
			{61 * time.Second, relay, b, &a, verdictUnconfirmed, 0, 0},
			{70 * time.Second, relay, a, &b, verdictSuspended, time.Minute, 130 * time.Second},
		}},
		{"reports about another relay don't confirm", []step{
			{0, other, a, &b, verdictUnconfirmed, 0, 0},
			{time.Second, relay, b, &a, verdictUnconfirmed, 0, 0},
		}},
		{"a reporter's waiting reports are bounded: its oldest makes room", []step{
			{0, relay, a, &b, verdictUnconfirmed, 0, 0},
			{time.Second, relay, a, &c, verdictUnconfirmed, 0, 0},
			{2 * time.Second, relay, a, &d, verdictUnconfirmed, 0, 0},
			{3 * time.Second, relay, b, &a, verdictUnconfirmed, 0, 0}, // a's report naming b was dropped
			{4 * time.Second, relay, d, &a, verdictSuspended, time.Minute, 64 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1_700_000_000, 0)
			s := newSuspensions(policy)
			for i, st := range tt.steps {
				now := start.Add(st.at)
				v, until, _ := s.report(st.relay, st.from, st.peer, now)
				if v != st.want {
					t.Fatalf("step %d: verdict %s, want %s", i, v, st.want)
				}
				if got := until.Sub(now); v == verdictSuspended && got != st.wantFor {
					t.Fatalf("step %d: suspended for %v, want %v", i, got, st.wantFor)
				}
				got, suspended := s.suspendedUntil(relay, now)
				switch {
				case st.wantTill == 0 && suspended:
					t.Fatalf("step %d: relay suspended until %v, want not suspended", i, got.Sub(start))
				case st.wantTill != 0 && (!suspended || got.Sub(start) != st.wantTill):
					t.Fatalf("step %d: relay suspended %t until %v, want until %v", i, suspended, got.Sub(start), st.wantTill)
				}
			}
		})
	}
}

// TestSuspensionsForget: a removed node leaves nothing behind, as a relay
// or a reporter, and records of forgiven relays are dropped.
func TestSuspensionsForget(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_700_000_000, 0)
	s := newSuspensions(defaultSuspendPolicy())
	relay, a, b := testKey(1), testKey(10), testKey(11)
	s.report(relay, a, nil, start)
	s.report(testKey(2), a, &b, start)
	s.forget(a)
	if len(s.pending) != 0 {
		t.Fatalf("%d reports of a removed node still wait", len(s.pending))
	}
	s.forget(relay)
	if _, ok := s.suspendedUntil(relay, start); ok || len(s.relays) != 0 {
		t.Fatalf("a removed relay is still recorded: %+v", s.relays)
	}
	s.report(relay, a, nil, start)
	s.expire(start.Add(suspendBase + suspendForgive))
	if len(s.relays) != 0 || s.count(start) != 0 {
		t.Fatalf("a forgiven relay is still recorded: %+v", s.relays)
	}
}
