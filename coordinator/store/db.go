package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/meshnode/meshnode/crypto"
)

// sqlDB is the Store's logic on a database/sql database, shared by SQLite
// and Postgres: the schema's SQL and every query are written once, in the
// subset both engines read alike ($N parameters, TEXT and BIGINT columns,
// INSERT … ON CONFLICT). What differs, each engine's opener fills in:
// how a write transaction takes the write lock, and the pools.
type sqlDB struct {
	// name names the database in errors: the file's path, or the URL
	// without its password.
	name string
	// w runs writes, r reads (they may be the same pool).
	w, r *sql.DB
	// txOpts and lock begin a write transaction: lock, when not empty,
	// is its first statement and holds the write lock until it ends.
	txOpts *sql.TxOptions
	lock   string
	// writes counts the write transactions begun on w: every write goes
	// through beginWrite or execWrite.
	writes atomic.Uint64
	// watch has Watch's subscribers. notify, when set, announces a
	// change inside its transaction, and the engine publishes what the
	// database delivers after commit (PostgreSQL); without it commit
	// publishes to watch itself (SQLite: one coordinator per database).
	watch  watchers
	notify func(ctx context.Context, tx *sql.Tx, c Change) error
	// cue, when set, sends a ChangeCue to every store on the database
	// (PostgreSQL); without it Cue publishes to watch.
	cue func(ctx context.Context, c Change) error
	// retryAt, when set (SetRetry), replaces defaultRetry.
	retryAt atomic.Pointer[Retry]
}

// Cue asks coordinator to cue to, which streams to it, to punch towards
// about now. It is delivered through Watch as a ChangeCue, to every
// store on the database, and is not stored: a cue lost with the
// listening connection is asked for again by the node's next rendezvous.
func (s *sqlDB) Cue(ctx context.Context, coordinator string, to, about crypto.PublicKey) error {
	c := Change{Kind: ChangeCue, Key: to, Peer: about, Coordinator: coordinator}
	if s.cue == nil {
		c.Own = true
		s.watch.publish(c)
		return nil
	}
	if err := retryErr(ctx, s, func() error { return s.cue(ctx, c) }); err != nil {
		return fmt.Errorf("database %s: send a punch cue for %s: %w", s.name, to.Short(), err)
	}
	return nil
}

// beginWrite begins a write transaction, which holds the database's write
// lock from its start to its end: two coordinators' registrations are
// serialised as one coordinator's are.
func (s *sqlDB) beginWrite(ctx context.Context) (*sql.Tx, error) {
	s.writes.Add(1)
	tx, err := s.w.BeginTx(ctx, s.txOpts)
	if err != nil {
		return nil, fmt.Errorf("database %s: begin: %w", s.name, err)
	}
	if s.lock != "" {
		if _, err := tx.ExecContext(ctx, s.lock); err != nil {
			tx.Rollback() //nolint:errcheck // the lock's error is the one to report
			return nil, fmt.Errorf("database %s: take the write lock: %w", s.name, err)
		}
	}
	return tx, nil
}

// execWrite runs one write statement in a transaction of its own, which
// announces c when the statement changed a row (a c without a Kind is
// not announced). A single statement is atomic in both engines and needs
// no lock beyond its rows'. A lost connection is retried (retry).
func (s *sqlDB) execWrite(ctx context.Context, c Change, query string, args ...any) (sql.Result, error) {
	return retry(ctx, s, func() (sql.Result, error) { return s.execWriteOnce(ctx, c, query, args...) })
}

func (s *sqlDB) execWriteOnce(ctx context.Context, c Change, query string, args ...any) (sql.Result, error) {
	s.writes.Add(1)
	tx, err := s.w.BeginTx(ctx, s.txOpts)
	if err != nil {
		return nil, fmt.Errorf("database %s: begin: %w", s.name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var changes []Change
	if n, err := res.RowsAffected(); err == nil && n > 0 && c.Kind != "" {
		changes = append(changes, c)
	}
	return res, s.commit(ctx, tx, changes...)
}

// commit commits a write transaction and has its changes reach the
// watchers: announced inside it (PostgreSQL's NOTIFY, delivered only if
// it commits) or published once it has.
func (s *sqlDB) commit(ctx context.Context, tx *sql.Tx, changes ...Change) error {
	if s.notify != nil {
		for _, c := range changes {
			if err := s.notify(ctx, tx, c); err != nil {
				return fmt.Errorf("database %s: announce the change: %w", s.name, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		if lostConnection(err) {
			err = &commitError{err}
		}
		return fmt.Errorf("database %s: commit: %w", s.name, err)
	}
	if s.notify == nil {
		for _, c := range changes {
			c.Own = true
			s.watch.publish(c)
		}
	}
	return nil
}

// Watch delivers the changes committed after it returns.
func (s *sqlDB) Watch(ctx context.Context) <-chan Change { return s.watch.watch(ctx) }

// WriteTransactions is how many write transactions were begun.
func (s *sqlDB) WriteTransactions() uint64 { return s.writes.Load() }

// Close ends the watches and closes the pools.
func (s *sqlDB) Close() error {
	s.watch.close()
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.w.Close(), s.r.Close())
}

// Setting reads a named value.
func (s *sqlDB) Setting(ctx context.Context, name string) (string, error) {
	v, err := retry(ctx, s, func() (v string, err error) {
		return v, s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("setting %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read setting %s from %s: %w", name, s.name, err)
	}
	return v, nil
}

// InitSetting writes a named value unless it is set, and reads back the
// value it has: the insert is atomic (a unique key), so whichever
// coordinator committed first set it, and every one reads that.
func (s *sqlDB) InitSetting(ctx context.Context, name, value string) (string, error) {
	if _, err := s.execWrite(ctx, Change{Kind: ChangeSetting}, `INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
		return "", fmt.Errorf("write setting %s to %s: %w", name, s.name, err)
	}
	return s.Setting(ctx, name)
}

// SetSetting writes a named value.
func (s *sqlDB) SetSetting(ctx context.Context, name, value string) error {
	_, err := s.execWrite(ctx, Change{Kind: ChangeSetting}, `INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	if err != nil {
		return fmt.Errorf("write setting %s to %s: %w", name, s.name, err)
	}
	return nil
}
