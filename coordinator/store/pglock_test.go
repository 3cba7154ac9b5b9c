package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wait"
)

// twoLeases opens two stores on db, as coordinators "a" and "b" with
// their leases (and locks) taken, "a" holding the presence of a node.
func twoLeases(t *testing.T, db string) (a, b Store, node crypto.PublicKey) {
	t.Helper()
	a, b = openTest(t, db), openTest(t, db)
	now := time.Now()
	for c, s := range map[string]Store{"a": a, "b": b} {
		if _, err := s.RenewLease(t.Context(), Lease{Coordinator: c}, now.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	node = newKey(t)
	if err := a.WritePresence(t.Context(), "a", []Presence{{Key: node, Since: now}}, nil); err != nil {
		t.Fatal(err)
	}
	return a, b, node
}

// pastLeases is an until for ExpireUnlocked that every lease taken now
// reaches: each counts as renewed long enough ago.
func pastLeases() time.Time { return time.Now().Add(time.Minute) }

// noneExpired checks that b's ExpireUnlocked ends no lease, and that
// node is still online.
func noneExpired(t *testing.T, b Store, node crypto.PublicKey, steady time.Duration, why string) {
	t.Helper()
	if gone, err := b.ExpireUnlocked(t.Context(), pastLeases(), steady); err != nil || len(gone) > 0 {
		t.Fatalf("%s: ExpireUnlocked = %v, %v; want none", why, gone, err)
	}
	if _, ok, err := b.Presence(t.Context(), node, time.Now()); err != nil || !ok {
		t.Fatalf("%s: presence of the node = %v, %v; want online", why, ok, err)
	}
}

// A coordinator whose lock session ends (its process died) is dead for
// the others at once: its lease and presence go, announced, but not a
// lease renewed too recently, and not once it holds its lock again.
func TestFreeLeaseLockIsDeath(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	a, b, node := twoLeases(t, db)
	noneExpired(t, b, node, 0, "both locks held")

	if n := terminateLock(t, db, "a"); n != 1 {
		t.Fatalf("ended %d sessions holding a's lock; want 1", n)
	}
	if gone, err := b.ExpireUnlocked(t.Context(), time.Now(), 0); err != nil || len(gone) > 0 {
		t.Fatalf("ExpireUnlocked of leases renewed after until = %v, %v; want none", gone, err)
	}
	ch := b.Watch(t.Context())
	expiresA(t, b, node, "a's free lock ends its lease")
	if c := next(t, ch); c.Kind != ChangePresence || c.Key != node {
		t.Fatalf("change %+v; want the presence of a's node", c)
	}
	if _, ok, err := b.Presence(t.Context(), node, time.Now()); err != nil || ok {
		t.Fatalf("presence of a's node = %v, %v; want offline", ok, err)
	}

	// a was alive: its next renewal takes a lease and its lock again.
	if renewed, err := a.RenewLease(t.Context(), Lease{Coordinator: "a"}, time.Now().Add(10*time.Second)); err != nil || renewed {
		t.Fatalf("a's renewal = %v, %v; want a new lease", renewed, err)
	}
	if err := a.WritePresence(t.Context(), "a", []Presence{{Key: node, Since: time.Now()}}, nil); err != nil {
		t.Fatal(err)
	}
	noneExpired(t, b, node, 0, "a holds its lock again")
}

// A database restart frees every lock: a live coordinator is not dead
// while it has not yet taken its lock again, nor after.
func TestRestartKeepsLiveLeases(t *testing.T) {
	t.Parallel()
	cluster := pgtest.New(t, pgtest.Options{})
	db := cluster.DB(t)
	a, b, node := twoLeases(t, db)
	noneExpired(t, b, node, 0, "both locks held")

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	wait.ForNil(t, 30*time.Second, "b renews after the restart", func() error {
		_, err := b.RenewLease(t.Context(), Lease{Coordinator: "b"}, time.Now().Add(10*time.Second))
		return err
	})
	// As a coordinator asks: leases renewed (10 s leases) a renewal (1 s)
	// or more after b's lock was taken again.
	noneExpired(t, b, node, 11*time.Second, "a has not renewed since the restart")
	wait.ForNil(t, 30*time.Second, "a renews after the restart", func() error {
		_, err := a.RenewLease(t.Context(), Lease{Coordinator: "a"}, time.Now().Add(10*time.Second))
		return err
	})
	noneExpired(t, b, node, 0, "a renewed and took its lock again")
}

// Lease locks are each database's own: a coordinator of the same ID on
// another database of the server, its lock held, keeps nobody alive here.
func TestLeaseLocksAreTheDatabases(t *testing.T) {
	t.Parallel()
	elsewhere := openTest(t, migrated.DB(t))
	if _, err := elsewhere.RenewLease(t.Context(), Lease{Coordinator: "a"}, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	db := migrated.DB(t)
	_, b, node := twoLeases(t, db)
	noneExpired(t, b, node, 0, "both locks held")
	if n := terminateLock(t, db, "a"); n != 1 {
		t.Fatalf("ended %d sessions holding a's lock; want 1", n)
	}
	expiresA(t, b, node, "a's free lock ends its lease, another database's a notwithstanding")
}

// expiresA waits for b's ExpireUnlocked to end a's lease, and checks
// that it took a's node offline, and only it.
func expiresA(t *testing.T, b Store, node crypto.PublicKey, what string) {
	t.Helper()
	var gone []crypto.PublicKey
	wait.ForNil(t, 10*time.Second, what, func() error {
		var err error
		if gone, err = b.ExpireUnlocked(t.Context(), pastLeases(), 0); err == nil && len(gone) == 0 {
			return errNoneYet
		}
		return err
	})
	if !slices.Equal(gone, []crypto.PublicKey{node}) {
		t.Fatalf("ExpireUnlocked = %v; want a's node", gone)
	}
}

// errNoneYet is a poll's "not yet".
var errNoneYet = errors.New("none yet")

// terminateLock ends the session holding coordinator's lease lock on db,
// as PostgreSQL does when its process dies, and returns how many it ended.
func terminateLock(t *testing.T, db, coordinator string) int {
	t.Helper()
	return countAsAdmin(t, pgtest.AdminURL(t), `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $3)
		AND classid = $1 AND objid = hashtext($2)::oid AND objsubid = 2`, leaseLockClass, coordinator, dbName(t, db))
}

// The lock's backend probes its coordinator, so the lock of one whose
// host is lost (no FIN or RST ever comes) is freed within seconds.
func TestLeaseLockBackendProbesItsCoordinator(t *testing.T) {
	s := openTest(t, migrated.DB(t))
	if _, err := s.RenewLease(t.Context(), Lease{Coordinator: "a"}, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	l := &s.(*Postgres).lock
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, want := range lockKeepalive {
		var got string
		if err := l.conn.QueryRow(t.Context(), "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatalf("%s on the lock connection: %v", name, err)
		}
		// PostgreSQL shows tcp_user_timeout with its unit.
		if got != want && got != want+"ms" && got != want+"s" {
			t.Errorf("%s = %q on the lock connection; want %s", name, got, want)
		}
	}
}
