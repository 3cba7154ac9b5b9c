package store

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// A node's presence holds while its coordinator's lease runs: it moves
// with the node, a coordinator clears only its own, and an expired or
// ended lease takes its nodes offline, each announced.
func TestPresenceUnderLease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		ch := s.Watch(ctx)
		now := time.Now()
		lease := now.Add(10 * time.Second)
		for _, c := range []string{"a", "b"} {
			if renewed, err := s.RenewLease(ctx, Lease{Coordinator: c}, lease); err != nil || renewed {
				t.Fatalf("first lease of %s: renewed %v, %v; want a new lease", c, renewed, err)
			}
		}
		if renewed, err := s.RenewLease(ctx, Lease{Coordinator: "a"}, lease); err != nil || !renewed {
			t.Fatalf("second lease of a: renewed %v, %v; want renewed", renewed, err)
		}
		k1, k2 := newKey(t), newKey(t)
		tcp := netip.MustParseAddrPort("198.18.0.7:50000")
		if err := s.WritePresence(ctx, "a", []Presence{{Key: k1, TCP: tcp, Since: now}, {Key: k2, Since: now}}, nil); err != nil {
			t.Fatal(err)
		}
		// k2 moves to b; a's late goodbye for it leaves it there.
		if err := s.WritePresence(ctx, "b", []Presence{{Key: k2, Since: now}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.WritePresence(ctx, "a", nil, []crypto.PublicKey{k2}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []crypto.PublicKey{k1, k2, k2} {
			if c := next(t, ch); c.Kind != ChangePresence || c.Key != want {
				t.Fatalf("change %+v; want presence of %v (a goodbye that deletes nothing announces nothing)", c, want.Short())
			}
		}
		p, ok, err := s.Presence(ctx, k1, now)
		if err != nil || !ok || p.Coordinator != "a" || p.TCP != tcp || p.Relay.IsValid() || p.Since.UnixMilli() != now.UnixMilli() {
			t.Fatalf("presence of k1 = %+v, %v, %v; want at a from %v", p, ok, err, tcp)
		}
		if p, ok, err := s.Presence(ctx, k2, now); err != nil || !ok || p.Coordinator != "b" {
			t.Fatalf("presence of k2 = %+v, %v, %v; want at b", p, ok, err)
		}

		// a stops renewing: past its lease its nodes are offline, and
		// expiring says which.
		later := lease.Add(time.Millisecond)
		if _, err := s.RenewLease(ctx, Lease{Coordinator: "b"}, later.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Presence(ctx, k1, later); err != nil || ok {
			t.Fatalf("k1 after a's lease: ok %v, %v; want offline", ok, err)
		}
		gone, err := s.ExpireLeases(ctx, later)
		if err != nil || !slices.Equal(gone, []crypto.PublicKey{k1}) {
			t.Fatalf("ExpireLeases = %v, %v; want k1", gone, err)
		}
		if c := next(t, ch); c.Kind != ChangePresence || c.Key != k1 {
			t.Fatalf("after the expiry: %+v", c)
		}
		if renewed, err := s.RenewLease(ctx, Lease{Coordinator: "a"}, later.Add(time.Second)); err != nil || renewed {
			t.Fatalf("a after its lease lapsed: renewed %v, %v; want a new lease", renewed, err)
		}
		online, err := s.Online(ctx, later)
		if err != nil || len(online) != 1 || online[0].Key != k2 {
			t.Fatalf("Online = %+v, %v; want k2 at b", online, err)
		}

		// b says goodbye.
		if gone, err := s.EndLease(ctx, "b"); err != nil || !slices.Equal(gone, []crypto.PublicKey{k2}) {
			t.Fatalf("EndLease(b) = %v, %v; want k2", gone, err)
		}
		if online, err := s.Online(ctx, later); err != nil || len(online) != 0 {
			t.Fatalf("Online after b's goodbye = %+v, %v; want none", online, err)
		}
	})
}

// A cue reaches every watcher, naming the coordinator asked, the node to
// cue and its peer; it is not announced on the changes' channel.
func TestCueReachesWatchers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ch := s.Watch(t.Context())
		to, about := newKey(t), newKey(t)
		if err := s.Cue(t.Context(), "b", to, about); err != nil {
			t.Fatal(err)
		}
		c := next(t, ch)
		if c.Kind != ChangeCue || c.Key != to || c.Peer != about || c.Coordinator != "b" {
			t.Fatalf("cue heard as %+v; want b asked to cue %v towards %v", c, to.Short(), about.Short())
		}
	})
}

// A cue notice this build can't read is dropped, not taken for missed
// changes: a cue is not state.
func TestUnreadableCueDropped(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	s := openTest(t, db)
	ch := s.Watch(t.Context())
	rawNotify(t, db, cueChannel, `not json`, `{"coordinator":"","to":"`+newKey(t).String()+`"}`)
	to := newKey(t)
	if err := s.Cue(t.Context(), "b", to, newKey(t)); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.Kind != ChangeCue || c.Key != to {
		t.Fatalf("first change after unreadable cues: %+v; want the readable cue", c)
	}
}

// A lease that ran out (the database was down for longer) is renewed as a
// new one: others may have read its nodes as offline meanwhile.
func TestRenewLeaseThatRanOut(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		if _, err := s.RenewLease(ctx, Lease{Coordinator: "a"}, time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if renewed, err := s.RenewLease(ctx, Lease{Coordinator: "a"}, time.Now().Add(10*time.Second)); err != nil || renewed {
			t.Fatalf("a lease that ran out: renewed %v, %v; want a new lease", renewed, err)
		}
		if renewed, err := s.RenewLease(ctx, Lease{Coordinator: "a"}, time.Now().Add(10*time.Second)); err != nil || !renewed {
			t.Fatalf("a running lease: renewed %v, %v; want renewed", renewed, err)
		}
	})
}

// Each coordinator's lease carries its public URL and pin: the live ones
// with a URL are listed, by URL, one per URL (the newer lease of a
// coordinator restarted before its old one ended), and one whose lease
// ended or that has no URL is not.
func TestLiveCoordinators(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		now := time.Now()
		pinA, pinB, pinB2 := strings.Repeat("aa", 32), strings.Repeat("bb", 32), strings.Repeat("b2", 32)
		for _, l := range []struct {
			lease Lease
			until time.Time
		}{
			{Lease{Coordinator: "b-old", URL: "https://b:8443", Pin: pinB}, now.Add(5 * time.Second)},
			{Lease{Coordinator: "b", URL: "https://b:8443", Pin: pinB2}, now.Add(10 * time.Second)},
			{Lease{Coordinator: "a", URL: "https://a:8443", Pin: pinA}, now.Add(10 * time.Second)},
			{Lease{Coordinator: "nourl"}, now.Add(10 * time.Second)},
			{Lease{Coordinator: "dead", URL: "https://dead:8443", Pin: pinA}, now.Add(-time.Second)},
		} {
			if _, err := s.RenewLease(ctx, l.lease, l.until); err != nil {
				t.Fatal(err)
			}
		}
		want := []Lease{{Coordinator: "a", URL: "https://a:8443", Pin: pinA}, {Coordinator: "b", URL: "https://b:8443", Pin: pinB2}}
		if got, err := s.LiveCoordinators(ctx, now); err != nil || !slices.Equal(got, want) {
			t.Fatalf("LiveCoordinators = %+v, %v; want %+v", got, err, want)
		}
		// A renewal records a changed URL (the same run keeps its ID).
		moved := Lease{Coordinator: "a", URL: "https://a6:8443", Pin: pinA}
		if renewed, err := s.RenewLease(ctx, moved, now.Add(10*time.Second)); err != nil || !renewed {
			t.Fatalf("renew a: %v, %v", renewed, err)
		}
		if _, err := s.EndLease(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		want = []Lease{moved, {Coordinator: "b-old", URL: "https://b:8443", Pin: pinB}}
		if got, err := s.LiveCoordinators(ctx, now); err != nil || !slices.Equal(got, want) {
			t.Fatalf("after b's goodbye: %+v, %v; want %+v", got, err, want)
		}
		if got, err := s.LiveCoordinators(ctx, now.Add(6*time.Second)); err != nil || !slices.Equal(got, want[:1]) {
			t.Fatalf("after b-old's lease: %+v, %v; want %+v", got, err, want[:1])
		}
	})
}

// InitSetting keeps the first value written: coordinators starting on one
// database all read the same.
func TestInitSetting(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		for _, v := range []string{"first", "second"} {
			if got, err := s.InitSetting(ctx, "shared", v); err != nil || got != "first" {
				t.Fatalf("InitSetting(%s) = %q, %v; want first", v, got, err)
			}
		}
	})
}
