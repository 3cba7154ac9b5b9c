package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is the Store on a PostgreSQL database (pgx), which any number
// of coordinators may share. Each committed change is announced on the
// database (NOTIFY), and each store hears them all (LISTEN): Watch.
type Postgres struct {
	sqlDB
	cfg    *pgx.ConnConfig
	listen listener
	lock   leaseLock
}

var _ Store = (*Postgres)(nil)

// writeLockKey is the transaction-scoped advisory lock every write
// transaction takes first (pg_advisory_xact_lock): coordinators sharing
// the database then write one at a time, as SQLite's BEGIN IMMEDIATE makes
// one coordinator's writers do, so a registration's read of the free names
// and addresses cannot race another coordinator's. The value is "meshnode"
// in ASCII; PostgreSQL releases the lock at COMMIT or ROLLBACK, and when a
// session dies.
const writeLockKey = 0x6d6573686e6f6465

// maxPGConns bounds one coordinator's pool; two more connections listen
// and hold its lease lock (pglock.go). PostgreSQL's default
// max_connections is 100, shared by every coordinator.
const maxPGConns = 8

// Connecting at start: a database that is still starting (after a reboot
// of both hosts, say) gets connectWithin to come up, retried with backoff
// from firstRetry up to maxRetry between attempts, ±50 % (jittered).
const (
	connectWithin = 30 * time.Second
	firstRetry    = 250 * time.Millisecond
	maxRetry      = 4 * time.Second
	// attemptTimeout bounds one attempt, so that a host that drops
	// packets leaves time for the next.
	attemptTimeout = 5 * time.Second
)

// IsPostgresURL reports whether database names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// Redacted is the database URL with its password hidden, for messages.
func Redacted(database string) string {
	u, err := url.Parse(database)
	if err != nil {
		return "(an unparsable database URL)"
	}
	return u.Redacted()
}

// OpenPostgres connects to the database at dsn (postgres://…), retrying
// with backoff while it is unreachable, and applies the schema migrations.
// Errors name the URL without its password and say what to do.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	name := Redacted(dsn)
	if !IsPostgresURL(dsn) {
		return nil, fmt.Errorf("database %s: not a postgres:// URL", name)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the URL, password included: say only
		// that it is malformed.
		return nil, fmt.Errorf("database %s: malformed URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…)", name)
	}
	cfg.RuntimeParams["application_name"] = "meshnode-coordinator"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxPGConns)
	db.SetMaxIdleConns(maxPGConns)
	s := &Postgres{sqlDB: sqlDB{
		name: name, w: db, r: db,
		// READ COMMITTED: each statement after the lock sees every
		// transaction committed before it was granted.
		txOpts: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
		lock:   fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", writeLockKey),
	}, cfg: cfg, lock: leaseLock{cfg: cfg}}
	s.listen = listener{cfg: cfg, origin: newOrigin(), watch: &s.watch}
	s.notify = s.listen.announce
	s.cue = func(ctx context.Context, c Change) error { return s.listen.sendCue(ctx, db, c) }
	if err := s.connect(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.listen.start(ctx, name); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close stops listening, ends the watches and closes the pool.
func (s *Postgres) Close() error {
	s.listen.close()
	s.lock.close()
	return s.sqlDB.Close()
}

// connect waits for the database to answer, retrying what may pass (a
// refused connection, a server starting up) with growing pauses, and
// failing at once on what won't (a wrong password, a missing database).
func (s *Postgres) connect(ctx context.Context) error {
	start := time.Now()
	wait := firstRetry
	var last error // the last attempt's own error, not the caller's deadline
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := s.w.PingContext(actx)
		cancel()
		if err == nil {
			return nil
		}
		if advice, permanent := s.permanent(err); permanent {
			return fmt.Errorf("database %s: %w; %s", s.name, err, advice)
		}
		if last == nil || ctx.Err() == nil {
			last = err
		}
		elapsed, pause := time.Since(start), jittered(wait)
		if elapsed+pause > connectWithin || ctx.Err() != nil {
			return fmt.Errorf("database %s is unreachable (%d attempts in %v): %w; start PostgreSQL, or correct the host and port of --database (database in the config file)",
				s.name, attempt, elapsed.Round(time.Millisecond), last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		wait = min(2*wait, maxRetry)
	}
}

// permanent says whether a connection error will not pass by waiting, and
// what the operator should do about it.
func (s *Postgres) permanent(err error) (advice string, permanent bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return "", false
	}
	switch {
	case strings.HasPrefix(pe.Code, "28"): // invalid_authorization_specification, invalid_password
		return fmt.Sprintf("check the user (%s) and password in the URL, and pg_hba.conf on the server", s.cfg.User), true
	case pe.Code == "3D000": // invalid_catalog_name
		return fmt.Sprintf("create it first: createdb -O %s %s", s.cfg.User, s.cfg.Database), true
	case pe.Code == "57P03", pe.Code == "53300": // cannot_connect_now (starting up), too_many_connections
		return "", false
	}
	return "the server refused the connection", true
}
