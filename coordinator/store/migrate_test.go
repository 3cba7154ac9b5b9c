package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestMigrations(t *testing.T) {
	t.Parallel()
	eachBlankBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		var versions int
		if err := rawDB(s).QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&versions); err != nil || versions != len(migrations) {
			t.Fatalf("schema_migrations rows = %d, %v; want %d", versions, err, len(migrations))
		}
		s.Close()
		// Reopening applies nothing twice.
		s = openTest(t, path)
		if _, err := rawDB(s).Exec(`INSERT INTO schema_migrations (version, description, applied_at) VALUES (999, 'future', 0)`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := Open(t.Context(), path)
		if err == nil || !strings.Contains(err.Error(), "schema version 999, newer") || !strings.Contains(err.Error(), Redacted(path)) {
			t.Fatalf("Open(newer schema) = %v; want an error naming the database and the newer version", err)
		}
	})
}

// A migration that fails part-way applies nothing: the schema stays at the
// version before it, and the error names the migration and the database.
// Not parallel: it changes migrations, which every Open reads.
func TestFailedMigrationAppliesNothing(t *testing.T) {
	eachBlankBackend(t, func(t *testing.T, db string) {
		openTest(t, db).Close()
		known := migrations
		t.Cleanup(func() { migrations = known })
		next := schemaVersion() + 1
		migrations = append(slices.Clone(known), migration{version: next, description: "half", statements: []string{
			`CREATE TABLE half_applied (id TEXT PRIMARY KEY)`,
			`ALTER TABLE no_such_table ADD COLUMN x TEXT`,
		}})
		_, err := Open(t.Context(), db)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migration %d (half)", next)) || !strings.Contains(err.Error(), Redacted(db)) {
			t.Fatalf("Open with a failing migration = %v; want an error naming it and the database", err)
		}
		migrations = known
		s := openTest(t, db)
		var version int
		if err := rawDB(s).QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil || version != schemaVersion() {
			t.Fatalf("schema version %d, %v; want %d", version, err, schemaVersion())
		}
		if _, err := rawDB(s).Exec(`SELECT 1 FROM half_applied`); err == nil {
			t.Fatal("the failed migration's first statement was kept")
		}
	})
}
