package store

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// migration is one versioned schema step. Versions only grow; a released
// migration is never edited, a new one is appended instead.
type migration struct {
	version     int
	description string
	statements  []string
}

// migrations is the schema history. The SQL is portable between SQLite and
// PostgreSQL: TEXT and BIGINT columns, booleans as 0/1 integers, times as
// Unix milliseconds, JSON documents in TEXT. UNIQUE columns are nullable so a
// removed node (a tombstone kept to answer node_removed) frees its name and
// addresses: both databases allow many NULLs in a UNIQUE column.
var migrations = []migration{
	{
		version:     1,
		description: "tokens, nodes and settings",
		statements: []string{
			`CREATE TABLE tokens (
				id          TEXT PRIMARY KEY,
				secret_hash TEXT NOT NULL,
				reusable    INTEGER NOT NULL,
				tags        TEXT NOT NULL,
				uses        INTEGER NOT NULL DEFAULT 0,
				created_at  BIGINT NOT NULL,
				expires_at  BIGINT NOT NULL,
				revoked_at  BIGINT
			)`,
			`CREATE TABLE nodes (
				public_key TEXT PRIMARY KEY,
				name       TEXT UNIQUE,
				host_index BIGINT UNIQUE,
				ipv4       TEXT UNIQUE,
				ipv6       TEXT UNIQUE,
				tags       TEXT NOT NULL,
				endpoints  TEXT NOT NULL,
				nat        TEXT,
				token_id   TEXT REFERENCES tokens(id) ON DELETE SET NULL,
				created_at BIGINT NOT NULL,
				last_seen  BIGINT,
				removed_at BIGINT
			)`,
			`CREATE TABLE settings (
				name  TEXT PRIMARY KEY,
				value TEXT NOT NULL
			)`,
		},
	},
	{
		version:     2,
		description: "banned keys: a removed node stays out until allowed",
		statements: []string{
			// name is the node's name when it was removed (its row's name
			// is freed for others), so the administrator can allow it by
			// the name they knew.
			`CREATE TABLE banned_keys (
				public_key TEXT PRIMARY KEY,
				name       TEXT NOT NULL,
				banned_at  BIGINT NOT NULL
			)`,
			// Nodes removed before this version were removed by their
			// administrator too: they stay out. Their names are gone.
			`INSERT INTO banned_keys (public_key, name, banned_at)
				SELECT public_key, '', removed_at FROM nodes WHERE removed_at IS NOT NULL`,
		},
	},
	{
		version:     3,
		description: "access policy versions",
		statements: []string{
			// Every version is kept, as the administrator wrote it
			// (comments included), so any can be read back and set
			// again. An empty text removed the policy.
			`CREATE TABLE policies (
				version    BIGINT PRIMARY KEY,
				text       TEXT NOT NULL,
				created_at BIGINT NOT NULL
			)`,
		},
	},
	{
		version:     4,
		description: "subnet routes: what each node advertises, what the administrator approved",
		statements: []string{
			// JSON lists: prefixes as the node last reported them, and
			// {"prefix", "approved_at"} in the order they were approved.
			`ALTER TABLE nodes ADD COLUMN advertised_routes TEXT NOT NULL DEFAULT '[]'`,
			`ALTER TABLE nodes ADD COLUMN approved_routes TEXT NOT NULL DEFAULT '[]'`,
		},
	},
	{
		version:     5,
		description: "presence: which coordinator holds each node's stream, under a lease",
		statements: []string{
			// Each running coordinator's lease, renewed while it runs
			// (Unix milliseconds).
			`CREATE TABLE coordinators (
				id          TEXT PRIMARY KEY,
				lease_until BIGINT NOT NULL
			)`,
			// A connected node's stream: its coordinator, its source
			// address and the relay it announces ('' for none).
			`CREATE TABLE presence (
				public_key  TEXT PRIMARY KEY,
				coordinator TEXT NOT NULL,
				tcp         TEXT NOT NULL,
				relay       TEXT NOT NULL,
				since       BIGINT NOT NULL
			)`,
			`CREATE INDEX presence_coordinator ON presence (coordinator)`,
		},
	},
	{
		version:     6,
		description: "coordinators record their public URL and certificate pin with their lease",
		statements: []string{
			// Where nodes dial each running coordinator ('' for no public
			// URL), and the SHA-256 pin of its own certificate: join
			// tokens and welcomes list them all.
			`ALTER TABLE coordinators ADD COLUMN url TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE coordinators ADD COLUMN pin TEXT NOT NULL DEFAULT ''`,
		},
	},
	{
		version:     7,
		description: "path reports and path changes, for one web page across coordinators",
		statements: []string{
			// A node's latest path report, recorded by the coordinator
			// holding its stream: JSON (store.pathReportRow).
			`CREATE TABLE path_reports (
				public_key  TEXT PRIMARY KEY,
				coordinator TEXT NOT NULL,
				reported_at BIGINT NOT NULL,
				report      TEXT NOT NULL
			)`,
			// The latest path changes (store.MaxPathChanges of them);
			// was and now are wire.PathKind values.
			`CREATE TABLE path_changes (
				at       BIGINT NOT NULL,
				from_key TEXT NOT NULL,
				peer_key TEXT NOT NULL,
				was      BIGINT NOT NULL,
				now      BIGINT NOT NULL
			)`,
			`CREATE INDEX path_changes_at ON path_changes (at)`,
		},
	},
	{
		version:     8,
		description: "coordinators' relays: the UDP relay each running coordinator offers the whole mesh; relay suspensions shared",
		statements: []string{
			// The relay's key, its IPv4 and IPv6 host:port ('' for
			// none), and started, the end of the coordinator's first
			// lease of this run, which orders coordinators by when they
			// came up (Unix milliseconds).
			`ALTER TABLE coordinators ADD COLUMN relay_key TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE coordinators ADD COLUMN relay TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE coordinators ADD COLUMN relay6 TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE coordinators ADD COLUMN started BIGINT NOT NULL DEFAULT 0`,
			// A relay node's suspension (a node reported that it did
			// not carry its traffic), for every coordinator's nodes:
			// until when (Unix milliseconds), and the how-manieth in a
			// row it is.
			`CREATE TABLE relay_suspensions (
				relay   TEXT PRIMARY KEY,
				until   BIGINT NOT NULL,
				strikes INTEGER NOT NULL
			)`,
			// A report that relay did not carry reporter's relayed
			// pings to peer, waiting for peer's report, which may come
			// to another coordinator; at is when (Unix milliseconds).
			`CREATE TABLE relay_reports (
				relay    TEXT NOT NULL,
				reporter TEXT NOT NULL,
				peer     TEXT NOT NULL,
				at       BIGINT NOT NULL,
				PRIMARY KEY (relay, reporter, peer)
			)`,
		},
	},
	{
		version:     9,
		description: "the software each node last reported running",
		statements: []string{
			// JSON of wire.Software ('' until it reports one): the
			// administrator's node table shows it for offline nodes too.
			`ALTER TABLE nodes ADD COLUMN software TEXT NOT NULL DEFAULT ''`,
		},
	},
}

// schemaVersion is the newest version this build knows.
func schemaVersion() int { return migrations[len(migrations)-1].version }

// migrate applies the missing migrations, each in its own write
// transaction with its schema_migrations row, so a crash or a lost
// connection leaves the schema at a whole version. Each step reads the
// version under the write lock: coordinators starting together on one
// PostgreSQL database apply each migration once, one after the other.
func (s *sqlDB) migrate(ctx context.Context) error {
	// One step per migration and a last one that finds nothing to do.
	for range len(migrations) + 1 {
		done, err := retry(ctx, s, func() (bool, error) { return s.migrateStep(ctx) })
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("database %s: migrations did not converge", s.name)
}

// migrateStep applies the first missing migration; done is true when
// there was none.
func (s *sqlDB) migrateStep(ctx context.Context) (done bool, err error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version     INTEGER PRIMARY KEY,
		description TEXT NOT NULL,
		applied_at  BIGINT NOT NULL
	)`); err != nil {
		return false, fmt.Errorf("database %s: create schema_migrations: %w", s.name, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("database %s: read schema version: %w", s.name, err)
	}
	if current > schemaVersion() {
		return false, fmt.Errorf("database %s has schema version %d, newer than this meshnode knows (%d): a newer meshnode migrated it; run that version or newer (downgrading would need a backup from before the upgrade)", s.name, current, schemaVersion())
	}
	i := slices.IndexFunc(migrations, func(m migration) bool { return m.version > current })
	if i < 0 {
		return true, tx.Commit()
	}
	m := migrations[i]
	for _, stmt := range m.statements {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("database %s: migration %d (%s): %w; nothing of it was applied (schema version %d)", s.name, m.version, m.description, err, current)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)`,
		m.version, m.description, time.Now().UnixMilli()); err != nil {
		return false, fmt.Errorf("database %s: record migration %d: %w", s.name, m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("database %s: commit migration %d: %w", s.name, m.version, err)
	}
	return false, nil
}
