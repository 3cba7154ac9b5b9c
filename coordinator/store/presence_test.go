package store

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/pgtest"
)

// A node's presence holds while its coordinator's lease runs: it moves
// with the node, a coordinator clears only its own, and an expired or
// ended lease takes its nodes offline, each announced.
func TestPresenceUnderLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		ch := s.Watch(ctx)
		now := time.Now()
		lease := now.Add(10 * time.Second)
		for _, c := range []string{"a", "b"} {
			if renewed, err := s.RenewLease(ctx, c, lease); err != nil || renewed {
				t.Fatalf("first lease of %s: renewed %v, %v; want a new lease", c, renewed, err)
			}
		}
		if renewed, err := s.RenewLease(ctx, "a", lease); err != nil || !renewed {
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
		if _, err := s.RenewLease(ctx, "b", later.Add(10*time.Second)); err != nil {
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
		if renewed, err := s.RenewLease(ctx, "a", later.Add(time.Second)); err != nil || renewed {
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
	db := pgtest.DB(t)
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
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		if _, err := s.RenewLease(ctx, "a", time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if renewed, err := s.RenewLease(ctx, "a", time.Now().Add(10*time.Second)); err != nil || renewed {
			t.Fatalf("a lease that ran out: renewed %v, %v; want a new lease", renewed, err)
		}
		if renewed, err := s.RenewLease(ctx, "a", time.Now().Add(10*time.Second)); err != nil || !renewed {
			t.Fatalf("a running lease: renewed %v, %v; want renewed", renewed, err)
		}
	})
}
