package store

import (
	"errors"

	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// The coordinators' relays are listed while their leases run, the one
// whose lease came first first, whatever order they advertise in; a
// relay is only recorded with a lease, and goes with it.
func TestCoordinatorRelays(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		now := time.Now()
		ka, kb := newKey(t), newKey(t)
		if err := s.AdvertiseRelay(ctx, CoordinatorRelay{Coordinator: "a", Key: ka, Addr: "198.18.0.1:3478"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("relay without a lease: %v; want ErrNotFound", err)
		}
		// b's URL and pin come with its lease (for its TCP relay).
		leaseB := Lease{Coordinator: "b", URL: "https://relay.example.com", Pin: "sha256/b"}
		for i, l := range []Lease{leaseB, {Coordinator: "a"}, {Coordinator: "c"}} {
			if _, err := s.RenewLease(ctx, l, now.Add(10*time.Second+time.Duration(i)*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []CoordinatorRelay{
			{Coordinator: "a", Key: ka, Addr: "198.18.0.1:3478", Addr6: "[2001:2::1]:3478"},
			{Coordinator: "b", Key: kb, Addr: "relay.example.com:3478"},
		} {
			if err := s.AdvertiseRelay(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// c advertises none: it is not listed. b renewing keeps its place.
		if _, err := s.RenewLease(ctx, leaseB, now.Add(20*time.Second)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Relays(ctx, now)
		if err != nil || len(got) != 2 || got[0].Coordinator != "b" || got[0].Key != kb || got[0].Addr != "relay.example.com:3478" || got[0].URL != "https://relay.example.com" || got[0].Pin != "sha256/b" ||
			got[1].Coordinator != "a" || got[1].Key != ka || got[1].Addr6 != "[2001:2::1]:3478" {
			t.Fatalf("Relays = %+v, %v; want b's then a's", got, err)
		}
		if _, err := s.EndLease(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Relays(ctx, now); err != nil || len(got) != 1 || got[0].Coordinator != "a" {
			t.Fatalf("Relays after b's goodbye = %+v, %v; want a's", got, err)
		}
		if got, err := s.Relays(ctx, now.Add(15*time.Second)); err != nil || len(got) != 0 {
			t.Fatalf("Relays past a's lease = %+v, %v; want none", got, err)
		}
	})
}

// A relay's suspension is recorded and announced for every coordinator;
// an earlier end never shortens a later one, and one that ended is not
// listed.
func TestRelaySuspensions(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		ch := s.Watch(ctx)
		now := time.Now().Truncate(time.Millisecond)
		r1, r2 := newKey(t), newKey(t)
		for _, r := range []RelaySuspension{
			{Relay: r1, Until: now.Add(2 * time.Minute), Strikes: 2},
			{Relay: r1, Until: now.Add(time.Minute), Strikes: 1}, // changes nothing, announces nothing
			{Relay: r2, Until: now.Add(time.Second), Strikes: 1},
		} {
			if err := s.SuspendRelay(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []crypto.PublicKey{r1, r2} {
			if c := next(t, ch); c.Kind != ChangeRelaySuspension || c.Key != want {
				t.Fatalf("change %+v; want the suspension of %v", c, want.Short())
			}
		}
		got, err := s.RelaySuspensions(ctx, now.Add(30*time.Second))
		if err != nil || len(got) != 1 || got[0].Relay != r1 || !got[0].Until.Equal(now.Add(2*time.Minute)) || got[0].Strikes != 2 {
			t.Fatalf("RelaySuspensions = %+v, %v; want r1's second suspension alone", got, err)
		}
	})
}

// A report naming a peer is found by its reporter, relay and peer while
// it is recent; reports older than the given bound are dropped.
func TestRelayReports(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		now := time.Now()
		relay, a, b := newKey(t), newKey(t), newKey(t)
		old := RelayReport{Relay: relay, Reporter: b, Peer: a, At: now.Add(-time.Minute)}
		if err := s.ReportRelay(ctx, old, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		r := RelayReport{Relay: relay, Reporter: a, Peer: b, At: now}
		if err := s.ReportRelay(ctx, r, now.Add(-30*time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			q     RelayReport
			since time.Time
			want  bool
		}{
			{r, now.Add(-time.Second), true},
			{r, now.Add(time.Second), false},
			{RelayReport{Relay: relay, Reporter: b, Peer: a}, now.Add(-time.Hour), false}, // dropped as too old
			{RelayReport{Relay: newKey(t), Reporter: a, Peer: b}, now.Add(-time.Second), false},
		} {
			if got, err := s.RelayReported(ctx, tc.q, tc.since); err != nil || got != tc.want {
				t.Errorf("RelayReported(%v→%v since %v) = %v, %v; want %v", tc.q.Reporter.Short(), tc.q.Peer.Short(), tc.since, got, err, tc.want)
			}
		}
	})
}
