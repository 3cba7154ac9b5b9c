package store

import (
	"errors"
	"testing"
	"time"
)

// TestPolicyVersions: every version is kept and numbered, survives a
// reopen, and an empty text (no policy) is a version too.
func TestPolicyVersions(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		if _, err := s.Policy(t.Context(), 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Policy before any: %v, want ErrNotFound", err)
		}
		now := time.UnixMilli(1_800_000_000_000)
		for i, text := range []string{"rules: []\n", "# v2\nrules: []\n", ""} {
			v, err := s.SetPolicy(t.Context(), text, now.Add(time.Duration(i)*time.Second))
			if err != nil || v.Version != uint64(i+1) || v.Text != text {
				t.Fatalf("SetPolicy #%d = %+v, %v", i+1, v, err)
			}
		}
		s.Close()
		s = openTest(t, path)
		newest, err := s.Policy(t.Context(), 0)
		if err != nil || newest.Version != 3 || newest.Text != "" || !newest.Created.Equal(now.Add(2*time.Second)) {
			t.Fatalf("newest = %+v, %v; want version 3, the removal", newest, err)
		}
		v2, err := s.Policy(t.Context(), 2)
		if err != nil || v2.Text != "# v2\nrules: []\n" {
			t.Fatalf("version 2 = %+v, %v", v2, err)
		}
		if _, err := s.Policy(t.Context(), 9); !errors.Is(err, ErrNotFound) {
			t.Fatalf("version 9: %v, want ErrNotFound", err)
		}
	})
}

// A database from before policies gains the table and keeps its nodes.
func TestMigrationAddsPolicies(t *testing.T) {
	t.Parallel()
	eachBlankBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		if _, err := register(s, "fleet", secret, newKey(t), "laptop"); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`DROP TABLE relay_reports`, `DROP TABLE relay_suspensions`, `DROP TABLE path_changes`, `DROP TABLE path_reports`, `DROP TABLE presence`, `DROP TABLE coordinators`, `DROP TABLE policies`, `ALTER TABLE nodes DROP COLUMN advertised_routes`,
			`ALTER TABLE nodes DROP COLUMN approved_routes`, `ALTER TABLE nodes DROP COLUMN software`, `DELETE FROM schema_migrations WHERE version >= 3`} {
			if _, err := rawDB(s).Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = openTest(t, path)
		if v, err := s.SetPolicy(t.Context(), "rules: []\n", time.Now()); err != nil || v.Version != 1 {
			t.Fatalf("SetPolicy after migrating: %+v, %v", v, err)
		}
		if nodes, err := s.Nodes(t.Context()); err != nil || len(nodes) != 1 {
			t.Fatalf("nodes after migrating: %d, %v", len(nodes), err)
		}
	})
}
