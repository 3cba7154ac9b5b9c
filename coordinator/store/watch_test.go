package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// watchTimeout bounds waiting for a change that must come.
const watchTimeout = 15 * time.Second

// next returns the next change on ch, failing t if none comes.
func next(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch ended")
		}
		return c
	case <-time.After(watchTimeout):
		t.Fatalf("no change within %v", watchTimeout)
	}
	return Change{}
}

// A watcher sees each committed change, in commit order, and nothing of
// a write that failed or changed nothing.
func TestWatchSeesCommittedChanges(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ch := s.Watch(t.Context())
		secret := addToken(t, s, "single", false, time.Now().Add(time.Hour))
		if c := next(t, ch); c.Kind != ChangeToken || !c.Own {
			t.Fatalf("after CreateToken: %+v", c)
		}
		used, fresh := newKey(t), newKey(t)
		if _, err := register(s, "single", secret, used, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := register(s, "single", secret, newKey(t), "b"); err == nil {
			t.Fatal("a single-use token served twice")
		}
		eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.5:41820"), Kind: wire.EndpointSTUN}}
		if err := s.SetEndpoints(t.Context(), fresh, eps, nil); err == nil {
			t.Fatal("endpoints of an unknown node stored")
		}
		if err := s.SetEndpoints(t.Context(), used, eps, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetPolicy(t.Context(), "rules: []\n", time.Now()); err != nil {
			t.Fatal(err)
		}
		want := []Change{{Kind: ChangeNode, Key: used, Own: true}, {Kind: ChangeEndpoints, Key: used, Own: true}, {Kind: ChangePolicy, Own: true}}
		for _, w := range want {
			if c := next(t, ch); c != w {
				t.Fatalf("change %+v, want %+v (the failed writes announce nothing)", c, w)
			}
		}
	})
}

// A watch ends, its channel closed, when its context does or the store
// closes.
func TestWatchEnds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx, cancel := context.WithCancel(t.Context())
		byCtx, byClose := s.Watch(ctx), s.Watch(t.Context())
		cancel()
		for _, ch := range []<-chan Change{byCtx, byClose} {
			if ch == byClose {
				s.Close()
			}
			select {
			case _, ok := <-ch:
				if ok {
					t.Fatal("a change on an ended watch")
				}
			case <-time.After(watchTimeout):
				t.Fatal("watch not closed")
			}
		}
	})
}

// A change committed through one coordinator's store reaches another's
// watcher on the same PostgreSQL database, not marked its own. How long
// it took is logged (the goal is well under a second; speed is for
// benchmarks, so the wait is watchTimeout).
func TestWatchAcrossStores(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	a, b := openTest(t, db), openTest(t, db)
	fromA, fromB := a.Watch(t.Context()), b.Watch(t.Context())
	secret := addToken(t, a, "fleet", true, time.Now().Add(time.Hour))
	if c := next(t, fromB); c.Kind != ChangeToken || c.Own {
		t.Fatalf("b heard %+v, want a token change from elsewhere", c)
	}
	k := newKey(t)
	start := time.Now()
	if _, err := register(a, "fleet", secret, k, "laptop"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the token's change, then the node's
		next(t, fromA)
	}
	c := next(t, fromB)
	took := time.Since(start)
	if c != (Change{Kind: ChangeNode, Key: k}) {
		t.Fatalf("b heard %+v, want node %s from elsewhere", c, k.Short())
	}
	t.Logf("a registration through one store reached the other's watcher in %v", took)
}

// When the listening connection is lost, watchers get a ChangeResync once
// it listens again, and changes flow again.
func TestWatchResyncAfterLostListener(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	a, b := openTest(t, db), openTest(t, db)
	fromB := b.Watch(t.Context())
	admin, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// Both stores listen; cutting every listener on the test's database
	// (the cluster serves other tests meanwhile) cuts b's.
	wait.For(t, watchTimeout, "two listeners", func() bool {
		var n int
		err := admin.QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, listenerName).Scan(&n)
		return err == nil && n == 2
	})
	if _, err := admin.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, listenerName); err != nil {
		t.Fatal(err)
	}
	if c := next(t, fromB); c.Kind != ChangeResync {
		t.Fatalf("after the lost listener: %+v, want a resync", c)
	}
	if _, err := a.SetPolicy(t.Context(), "", time.Now()); err != nil {
		t.Fatal(err)
	}
	for {
		// a's listener may come back after b's: its resync is not b's.
		if c := next(t, fromB); c.Kind != ChangeResync {
			if c != (Change{Kind: ChangePolicy}) {
				t.Fatalf("after reconnecting: %+v, want the policy change", c)
			}
			return
		}
	}
}

// A watcher that falls behind loses its oldest changes to a resync, and
// the one publishing never blocks.
func TestWatchOverflowResyncs(t *testing.T) {
	t.Parallel()
	var w watchers
	ch := w.watch(t.Context())
	for range watchBuffer + 3 {
		w.publish(Change{Kind: ChangePresence})
	}
	var kinds []ChangeKind
	for range watchBuffer {
		kinds = append(kinds, (<-ch).Kind)
	}
	if kinds[len(kinds)-1] != ChangeResync || len(ch) != 0 {
		t.Fatalf("last of %d buffered: %s, %d left; want a resync last", len(kinds), kinds[len(kinds)-1], len(ch))
	}
	w.close()
	if _, ok := <-ch; ok {
		t.Fatal("watch open after close")
	}
}

// A notice this build cannot read (garbage, or a newer coordinator's
// kind) makes watchers read everything again rather than be ignored.
func TestWatchUnreadableNoticeResyncs(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	s := openTest(t, db)
	ch := s.Watch(t.Context())
	for _, payload := range []string{`not json`, `{"kind":"future","origin":"x"}`, `{"kind":"node","key":"short"}`} {
		rawNotify(t, db, notifyChannel, payload)
		if c := next(t, ch); c.Kind != ChangeResync {
			t.Fatalf("notice %q: %+v, want a resync", payload, c)
		}
	}
}

// rawNotify sends payloads on channel from a connection of its own, as
// another program on the database could.
func rawNotify(t *testing.T, db, channel string, payloads ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, p := range payloads {
		if _, err := conn.Exec(t.Context(), `SELECT pg_notify($1, $2)`, channel, p); err != nil {
			t.Fatal(err)
		}
	}
}
