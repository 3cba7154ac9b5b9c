package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// What counts as a lost connection, run again, and what is the
// database's answer, returned at once.
func TestLostConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"terminated", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"refused", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"bad conn", driver.ErrBadConn, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"wrong password", &pgconn.PgError{Code: "28P01"}, false},
		{"not found", ErrNotFound, false},
		{"token used", ErrTokenUsed, false},
		{"lost during COMMIT", fmt.Errorf("database x: commit: %w", &commitError{io.ErrUnexpectedEOF}), false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lostConnection(tt.err); got != tt.want {
				t.Fatalf("lostConnection(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// terminateAll ends every session on db but the caller's, as PostgreSQL's
// idle_session_timeout or an administrator does, and returns how many.
func terminateAll(t *testing.T, admin, db string) int {
	t.Helper()
	return countAsAdmin(t, admin, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName(t, db))
}

// countAsAdmin runs query, which counts, as the cluster's superuser.
func countAsAdmin(t *testing.T, admin, query string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func dbName(t *testing.T, db string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(db)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// The server ends every connection of the pool, idle, and the listener's:
// the next operations, at once (before pgx would ping an idle connection),
// run on new connections, and the watchers are told to read everything
// again once the listener is back.
func TestPostgresKilledIdleConnections(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	s := openTest(t, db)
	secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
	// Several pooled connections, idle now, each used twice: pgx pings
	// one it has not used before, or not for a second, before reusing it.
	for range 2 {
		var wg sync.WaitGroup
		for range maxPGConns {
			wg.Go(func() { s.Nodes(t.Context()) }) //nolint:errcheck // only filling the pool
		}
		wg.Wait()
	}
	ch := s.Watch(t.Context())
	if n := terminateAll(t, pgtest.AdminURL(t), db); n < 2 {
		t.Fatalf("terminated %d sessions; want the pool's and the listener's", n)
	}
	k := newKey(t)
	if _, err := register(s, "fleet", secret, k, "after-kill"); err != nil {
		t.Fatalf("Register on a pool the server emptied: %v", err)
	}
	if _, err := s.Node(t.Context(), k); err != nil {
		t.Fatalf("Node on a pool the server emptied: %v", err)
	}
	if ns, err := s.Nodes(t.Context()); err != nil || len(ns) != 1 {
		t.Fatalf("Nodes = %d, %v; want the one registered", len(ns), err)
	}
	for c := next(t, ch); c.Kind != ChangeResync; c = next(t, ch) {
	}
	eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.5:41820"), Kind: wire.EndpointSTUN}}
	if err := s.SetEndpoints(t.Context(), k, eps, nil); err != nil {
		t.Fatal(err)
	}
	// The registration's notice may come before or after the resync.
	for c := next(t, ch); c.Kind != ChangeEndpoints || c.Key != k; c = next(t, ch) {
	}
}

// PostgreSQL restarts (fast shutdown, start) while a coordinator keeps
// registering nodes: the registrations ride it out, every acknowledged one
// is there afterwards, and the store and its watch work on.
func TestPostgresRestartMidRun(t *testing.T) {
	t.Parallel()
	cluster := pgtest.New(t, pgtest.Options{})
	db := cluster.DB(t)
	s := openTest(t, db)
	secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
	ch := s.Watch(t.Context())

	var (
		mu    sync.Mutex
		acked []crypto.PublicKey
		errs  []error
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := newKey(t)
			_, err := register(s, "fleet", secret, k, fmt.Sprintf("n%d", i))
			mu.Lock()
			if err == nil {
				acked = append(acked, k)
			} else if _, ambiguous := errors.AsType[*commitError](err); !ambiguous {
				// A COMMIT cut off may or may not have applied and is not
				// acknowledged; anything else is a failure to ride out.
				errs = append(errs, err)
			}
			mu.Unlock()
		}
	})
	defer func() { close(stop); wg.Wait() }()
	wait.For(t, 30*time.Second, "registrations before the restart", func() bool { return ackedCount() >= 5 })
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	before := ackedCount()
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL down for %v", time.Since(down).Round(time.Millisecond))
	wait.For(t, 30*time.Second, "registrations after the restart", func() bool { return ackedCount() >= before+5 })
	close(stop)
	wg.Wait()
	stop = make(chan struct{})

	if err := errors.Join(errs...); err != nil {
		t.Fatalf("registrations across the restart failed: %v", err)
	}
	nodes, err := s.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	have := map[crypto.PublicKey]bool{}
	for _, n := range nodes {
		have[n.Key] = true
	}
	for _, k := range acked {
		if !have[k] {
			t.Errorf("acknowledged registration of %s lost in the restart", k.Short())
		}
	}
	t.Logf("%d registrations acknowledged, %d before the restart", len(acked), before)
	for c := next(t, ch); c.Kind != ChangeResync; c = next(t, ch) {
	}
	if _, err := s.SetPolicy(t.Context(), "rules: []\n", time.Now()); err != nil {
		t.Fatal(err)
	}
	for c := next(t, ch); c.Kind != ChangePolicy; c = next(t, ch) {
	}
}

// While PostgreSQL stays down, an operation gives up at its caller's
// deadline, with an error that names the database, without its password,
// and says what to check.
func TestPostgresDownGivesUp(t *testing.T) {
	t.Parallel()
	cluster := pgtest.New(t, pgtest.Options{})
	db := cluster.DB(t)
	s := openTest(t, db)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.Nodes(ctx)
	if err == nil {
		t.Fatal("Nodes with PostgreSQL down succeeded")
	}
	t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
	msg := err.Error()
	if !strings.Contains(msg, Redacted(db)) || !strings.Contains(msg, "is PostgreSQL running") || strings.Contains(msg, pgtest.Password) {
		t.Fatalf("error %q: want the database named, without its password, and what to check", msg)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %q is not ErrUnavailable", msg)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("gave up after %v; want about the caller's 2 s", took)
	}
}
