package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/meshnode/meshnode/crypto"
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
// pure Go): one coordinator's.
type SQLite struct {
	sqlDB
}

var _ Store = (*SQLite)(nil)

// ExpireUnlocked ends no lease: a SQLite database has one coordinator.
func (s *SQLite) ExpireUnlocked(context.Context, time.Time, time.Duration) ([]crypto.PublicKey, error) {
	return nil, nil
}

// OpenSQLite opens (creating if needed) the database at path, checks its
// integrity and applies the schema migrations. Errors name the path.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
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

	// w has a single connection: in-process writers queue in database/sql
	// instead of spinning in SQLite's busy handler, and every write
	// transaction starts with BEGIN IMMEDIATE (_txlock), which is the
	// write lock: the read in Register's check-then-update cannot race
	// another writer.
	s := &SQLite{sqlDB{name: abs}}
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
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// check verifies that the file is a healthy SQLite database in WAL mode.
func (s *SQLite) check(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("database %s is unreadable or not a database: %w; restore it from a backup or move it away", s.name, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("database %s: journal mode is %q, not WAL (is the file on a filesystem without shared memory?)", s.name, mode)
	}
	problems, err := s.quickCheck(ctx)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("database %s is corrupt (%s); restore it from a backup or move it away", s.name, strings.Join(problems, "; "))
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
