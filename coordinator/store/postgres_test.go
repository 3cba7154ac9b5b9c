package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wait"
)

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// An unreachable database is retried, then refused with an error that
// names it (without the password) and says what to do.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	dsn := fmt.Sprintf("postgres://meshnode:%s@127.0.0.1:%d/mesh?sslmode=disable", pgtest.Password, closedPort(t))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := OpenPostgres(ctx, dsn)
	if err == nil {
		t.Fatal("OpenPostgres of a closed port succeeded")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{Redacted(dsn), "unreachable", "attempts", "start PostgreSQL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "(1 attempts") || strings.Contains(msg, pgtest.Password) {
		t.Errorf("error %q: want retries and no password", msg)
	}
}

// Mistakes that waiting won't fix fail at once, with what to do.
func TestPostgresPermanentErrors(t *testing.T) {
	t.Parallel()
	admin := pgtest.AdminURL(t)
	missing := strings.Replace(admin, "/postgres?", "/nope?", 1)
	tests := []struct {
		name, dsn, want string
	}{
		{"missing database", missing, "createdb -O meshnode nope"},
		{"unknown user", strings.Replace(admin, "//meshnode:", "//nobody:", 1), "check the user (nobody) and password"},
		{"malformed", "postgres://meshnode:" + pgtest.Password + "@127.0.0.1:99999/x", "malformed URL"},
		{"not PostgreSQL", "mysql://meshnode:" + pgtest.Password + "@127.0.0.1/x", "not a postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenPostgres(t.Context(), tt.dsn)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), pgtest.Password) ||
				strings.Contains(err.Error(), "attempts") {
				t.Fatalf("OpenPostgres = %v; want %q at once, without the password", err, tt.want)
			}
		})
	}
}

// Two coordinators registering at once on one database never hand out a
// name or an address twice: every write transaction takes the write lock.
func TestPostgresConcurrentStores(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	a, b := openTest(t, db), openTest(t, db)
	secret := addToken(t, a, "fleet", true, time.Now().Add(time.Hour))
	const perStore = 15
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		addrs = map[string]bool{}
		names = map[string]bool{}
		errs  []error
	)
	for _, s := range []Store{a, b} {
		wg.Go(func() {
			for range perStore {
				n, err := register(s, "fleet", secret, newKey(t), "web")
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				addrs[n.IPv4.String()], names[n.Name] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 2*perStore || len(names) != 2*perStore {
		t.Fatalf("%d registrations got %d addresses and %d names", 2*perStore, len(addrs), len(names))
	}
}

// A connection lost in the middle of a write transaction applies nothing,
// and the store runs the transaction again, whole, on a new one: the
// single-use token is consumed once, by the registration that was
// acknowledged.
func TestPostgresLostConnectionMidTransaction(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	s := openTest(t, db)
	secret := addToken(t, s, "single", false, time.Now().Add(time.Hour))
	// Another session holds the write lock, as a coordinator mid-write.
	holder, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	lockTx, err := holder.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lockTx.Rollback(context.Background()) //nolint:errcheck // a no-op once rolled back
	if _, err := lockTx.Exec(t.Context(), `SELECT pg_advisory_xact_lock($1)`, int64(writeLockKey)); err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	result := make(chan error, 1)
	go func() {
		_, err := register(s, "single", secret, k, "laptop")
		result <- err
	}()
	// Once the registration's transaction waits for the lock, its
	// connection is cut by the server; the retry waits on a new one. A
	// session of its own watches: pg_stat_activity stays as it was first
	// read for the rest of a transaction. Only the test's database: the
	// cluster serves other tests meanwhile.
	watcher, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(context.Background())
	waiter := func(not int) (pid int, err error) {
		return pid, watcher.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()
			AND pid <> pg_backend_pid() AND pid <> $1`, not).Scan(&pid)
	}
	var victim int
	wait.ForNil(t, 15*time.Second, "the registration waiting for the write lock", func() (err error) {
		victim, err = waiter(0)
		return err
	})
	if _, err := watcher.Exec(t.Context(), `SELECT pg_terminate_backend($1)`, victim); err != nil {
		t.Fatal(err)
	}
	wait.ForNil(t, 15*time.Second, "the registration, retried on a new connection, waiting for the lock", func() error {
		_, err := waiter(victim)
		return err
	})
	if err := lockTx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatalf("Register across a lost connection: %v", err)
	}
	if _, err := s.Node(t.Context(), k); err != nil {
		t.Fatalf("node after the retried registration: %v", err)
	}
	if toks, err := s.Tokens(t.Context()); err != nil || toks[0].Uses != 1 {
		t.Fatalf("token after the retried registration: %+v, %v; want it used once", toks, err)
	}
}

// A database that refuses the first connections (still starting) is
// waited for: Open retries and succeeds once it answers.
func TestPostgresRetriesUntilUp(t *testing.T) {
	t.Parallel()
	db := migrated.DB(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	const refuse = 2
	front := startFlakyProxy(t, u.Host, refuse)
	u.Host = front.addr
	s, err := OpenPostgres(t.Context(), u.String())
	if err != nil {
		t.Fatalf("OpenPostgres through a database that refuses %d connections first: %v", refuse, err)
	}
	s.Close()
	if got := front.accepted.Load(); got <= refuse {
		t.Fatalf("%d connections; want the %d refused ones retried", got, refuse)
	}
}

// flakyProxy forwards loopback TCP connections to a server, except the
// first few, which it closes at once.
type flakyProxy struct {
	addr     string
	accepted atomic.Int32
}

func startFlakyProxy(t *testing.T, backend string, refuse int32) *flakyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if p.accepted.Add(1) <= refuse {
				c.Close()
				continue
			}
			wg.Go(func() { forward(c, backend) })
		}
	})
	return p
}

// forward copies between c and a new connection to backend until either
// side closes.
func forward(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }() //nolint:errcheck // either side closing ends it
	go func() { io.Copy(c, b); done <- struct{}{} }() //nolint:errcheck // either side closing ends it
	<-done
}

// Coordinators started together on a new database apply each migration
// once: every step reads the version under the write lock.
func TestPostgresConcurrentMigrations(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	const coordinators = 4
	errs := make(chan error, coordinators)
	var wg sync.WaitGroup
	for range coordinators {
		wg.Go(func() {
			s, err := Open(t.Context(), db)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a coordinator starting beside others: %v", err)
		}
	}
	s := openTest(t, db)
	var rows, newest int
	if err := rawDB(s).QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&rows, &newest); err != nil ||
		rows != len(migrations) || newest != schemaVersion() {
		t.Fatalf("schema_migrations: %d rows up to %d (%v); want each of %d once", rows, newest, err, len(migrations))
	}
}
