package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// busyTimeout is how long a write waits for another process's write (a
// `meshnode token create` next to a running coordinator) before failing.
// Writes are single-row and take milliseconds, so this is generous.
const busyTimeout = 10 * time.Second

// maxReaders bounds the read pool; WAL lets readers run beside the writer.
const maxReaders = 4

// dbFileMode keeps the database, which holds token hashes and the node
// list, private to the coordinator's user.
const dbFileMode = 0o600

// SQLite is the Store on an embedded SQLite database (modernc.org/sqlite,
// pure Go).
type SQLite struct {
	path string
	// w has a single connection: in-process writers queue in database/sql
	// instead of spinning in SQLite's busy handler, and every write
	// transaction starts with BEGIN IMMEDIATE (_txlock), so the read in
	// Register's check-then-update cannot race another writer.
	w *sql.DB
	r *sql.DB
	// writes counts the write transactions begun on w: every write goes
	// through beginWrite or execWrite.
	writes atomic.Uint64
}

var _ Store = (*SQLite)(nil)

// Open opens (creating if needed) the database at path, checks its
// integrity and applies the schema migrations. Errors name the path.
func Open(ctx context.Context, path string) (*SQLite, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	// Create the file ourselves first: SQLite's own error for a missing or
	// unwritable directory ("unable to open database file") names nothing,
	// and this sets the file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, dbFileMode)
	if err != nil {
		return nil, fmt.Errorf("open database: %w (the coordinator's data directory must exist and be writable by its user)", err)
	}
	f.Close()

	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	// synchronous=FULL makes SQLite fsync the WAL at every commit. Register
	// returns only after its commit, and the coordinator answers a node only
	// after Register returns, so a registration a node was told about is on
	// disk and survives kill -9 and power loss. (NORMAL would survive kill -9
	// but could lose the last commits on power loss, after the node was told.)
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()

	s := &SQLite{path: abs}
	if s.w, err = sql.Open("sqlite", dsn); err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	s.w.SetMaxOpenConns(1)
	if s.r, err = sql.Open("sqlite", dsn); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	s.r.SetMaxOpenConns(maxReaders)
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := migrate(ctx, s.w, abs); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// check verifies that the file is a healthy SQLite database in WAL mode.
func (s *SQLite) check(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("database %s is unreadable or not a database: %w; restore it from a backup or move it away", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("database %s: journal mode is %q, not WAL (is the file on a filesystem without shared memory?)", s.path, mode)
	}
	problems, err := s.quickCheck(ctx)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("database %s is corrupt (%s); restore it from a backup or move it away", s.path, strings.Join(problems, "; "))
	}
	return nil
}

// maxProblems bounds how much of a corruption report goes into an error.
const maxProblems = 3

// quickCheck runs SQLite's integrity check (O(N), without the index
// cross-checks of integrity_check) and returns what it found wrong.
func (s *SQLite) quickCheck(ctx context.Context) ([]string, error) {
	rows, err := s.w.QueryContext(ctx, `PRAGMA quick_check(`+strconv.Itoa(maxProblems)+`)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return problems, err
		}
		if line != "ok" {
			problems = append(problems, strings.Join(strings.Fields(line), " "))
		}
	}
	return problems, rows.Err()
}

// beginWrite begins a write transaction, which holds the database's
// write lock from its start (BEGIN IMMEDIATE) to its end.
func (s *SQLite) beginWrite(ctx context.Context) (*sql.Tx, error) {
	s.writes.Add(1)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("database %s: begin: %w", s.path, err)
	}
	return tx, nil
}

// execWrite runs one write statement, a write transaction of its own.
func (s *SQLite) execWrite(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s.writes.Add(1)
	return s.w.ExecContext(ctx, query, args...)
}

// WriteTransactions is how many write transactions were begun.
func (s *SQLite) WriteTransactions() uint64 { return s.writes.Load() }

// Close closes both pools.
func (s *SQLite) Close() error {
	return errors.Join(s.w.Close(), s.r.Close())
}

// Setting reads a named value.
func (s *SQLite) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("setting %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read setting %s from %s: %w", name, s.path, err)
	}
	return v, nil
}

// SetSetting writes a named value.
func (s *SQLite) SetSetting(ctx context.Context, name, value string) error {
	// INSERT … ON CONFLICT … DO UPDATE is the same in SQLite and PostgreSQL.
	_, err := s.execWrite(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	if err != nil {
		return fmt.Errorf("write setting %s to %s: %w", name, s.path, err)
	}
	return nil
}

// CreateToken records a new join token.
func (s *SQLite) CreateToken(ctx context.Context, t Token) error {
	tags, err := json.Marshal(nonNil(t.Tags))
	if err != nil {
		return fmt.Errorf("encode token tags: %w", err)
	}
	_, err = s.execWrite(ctx, `INSERT INTO tokens (id, secret_hash, reusable, tags, uses, created_at, expires_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6)`,
		t.ID, t.SecretHash, boolInt(t.Reusable), string(tags), t.Created.UnixMilli(), t.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("store token %s in %s: %w", t.ID, s.path, err)
	}
	return nil
}

const tokenColumns = `id, secret_hash, reusable, tags, uses, created_at, expires_at, revoked_at`

// Tokens lists every token, newest first.
func (s *SQLite) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens in %s: %w", s.path, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks a token revoked.
func (s *SQLite) RevokeToken(ctx context.Context, id string, now time.Time) error {
	res, err := s.execWrite(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, now.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("revoke token %s in %s: %w", id, s.path, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	return nil
}

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface{ Scan(dest ...any) error }

func scanToken(sc scanner) (Token, error) {
	var (
		t        Token
		reusable int
		tags     string
		created  int64
		expires  int64
		revoked  sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.SecretHash, &reusable, &tags, &t.Uses, &created, &expires, &revoked); err != nil {
		return t, err
	}
	t.Reusable = reusable != 0
	t.Created = time.UnixMilli(created)
	t.Expires = time.UnixMilli(expires)
	t.Revoked = fromNull(revoked)
	if err := json.Unmarshal([]byte(tags), &t.Tags); err != nil {
		return t, fmt.Errorf("token %s: tags: %w", t.ID, err)
	}
	return t, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
