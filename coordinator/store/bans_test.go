package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// A removed key stays out, whatever token it brings, until it is allowed
// back; the ban survives a restart.
func TestRemovedKeyStaysOut(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		ctx := t.Context()
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		k := newKey(t)
		n, err := register(s, "fleet", secret, k, "laptop")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.RemoveNode(ctx, "laptop", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := register(s, "fleet", secret, k, "laptop"); !errors.Is(err, ErrBanned) {
			t.Fatalf("banned key registering with a valid token: %v, want ErrBanned", err)
		}
		fresh := addToken(t, s, "fresh", false, time.Now().Add(time.Hour))
		if _, err := register(s, "fresh", fresh, k, "laptop"); !errors.Is(err, ErrBanned) {
			t.Fatalf("banned key registering with a new token: %v, want ErrBanned", err)
		}
		// The refusal consumed nothing.
		if toks, err := s.Tokens(ctx); err != nil || toks[0].ID != "fresh" || toks[0].Uses != 0 {
			t.Fatalf("tokens after a banned registration: %+v, %v", toks, err)
		}
		s.Close()

		s = openTest(t, path)
		bans, err := s.Bans(ctx)
		if err != nil || len(bans) != 1 || bans[0].Key != k || bans[0].Name != "laptop" || bans[0].Since.IsZero() {
			t.Fatalf("Bans after restart = %+v, %v", bans, err)
		}
		if _, err := s.Allow(ctx, "desktop"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Allow(unknown name) = %v, want ErrNotFound", err)
		}
		b, err := s.Allow(ctx, "laptop")
		if err != nil || b.Key != k {
			t.Fatalf("Allow(laptop) = %+v, %v", b, err)
		}
		again, err := register(s, "fresh", fresh, k, "laptop")
		if err != nil || again.IPv4 != n.IPv4 {
			t.Fatalf("allowed key registering = %+v, %v; want it back at %v", again, err, n.IPv4)
		}
		if bans, err := s.Bans(ctx); err != nil || len(bans) != 0 {
			t.Fatalf("Bans after allow = %+v, %v", bans, err)
		}
	})
}

func TestAllowByKeyAndAmbiguousName(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		k1, k2 := newKey(t), newKey(t)
		// Two nodes, one after the other, named web and removed.
		for _, k := range []crypto.PublicKey{k1, k2} {
			if _, err := register(s, "fleet", secret, k, "web"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RemoveNode(ctx, "web", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.Allow(ctx, "web")
		if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), k1.String()) || !strings.Contains(err.Error(), k2.String()) {
			t.Fatalf("Allow(ambiguous name) = %v; want ErrAmbiguous listing both keys", err)
		}
		if b, err := s.Allow(ctx, k2.String()); err != nil || b.Key != k2 {
			t.Fatalf("Allow(key) = %+v, %v", b, err)
		}
		// Now the name is no longer ambiguous.
		if b, err := s.Allow(ctx, "web"); err != nil || b.Key != k1 {
			t.Fatalf("Allow(web) = %+v, %v", b, err)
		}
	})
}

// Nodes removed before bans existed are banned by the migration.
func TestMigrationBansEarlierRemovals(t *testing.T) {
	t.Parallel()
	eachBlankBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		k := newKey(t)
		if _, err := register(s, "fleet", secret, k, "old"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RemoveNode(t.Context(), "old", time.Now()); err != nil {
			t.Fatal(err)
		}
		// Back to schema version 1, as a database written before bans.
		for _, q := range []string{`DROP TABLE relay_reports`, `DROP TABLE relay_suspensions`, `DROP TABLE path_changes`, `DROP TABLE path_reports`, `DROP TABLE presence`, `DROP TABLE coordinators`, `DROP TABLE banned_keys`, `DROP TABLE policies`, `ALTER TABLE nodes DROP COLUMN advertised_routes`,
			`ALTER TABLE nodes DROP COLUMN approved_routes`, `ALTER TABLE nodes DROP COLUMN software`, `DELETE FROM schema_migrations WHERE version >= 2`} {
			if _, err := rawDB(s).Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = openTest(t, path)
		bans, err := s.Bans(t.Context())
		if err != nil || len(bans) != 1 || bans[0].Key != k || bans[0].Name != "" {
			t.Fatalf("Bans after migration = %+v, %v; want the removed key, without a name", bans, err)
		}
		if _, err := register(s, "fleet", secret, k, "old"); !errors.Is(err, ErrBanned) {
			t.Fatalf("earlier removed key registering: %v, want ErrBanned", err)
		}
		var v int
		if err := rawDB(s).QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != schemaVersion() {
			t.Fatalf("schema version %d, %v", v, err)
		}
	})
}

func TestUpdateTags(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		secret := addToken(t, s, "t", true, time.Now().Add(time.Hour), "web")
		k := newKey(t)
		if _, err := register(s, "t", secret, k, "a"); err != nil {
			t.Fatal(err)
		}
		n, err := s.UpdateTags(t.Context(), "a", []string{"relay", "eu", "web"}, nil)
		if err != nil || strings.Join(n.Tags, ",") != "web,relay,eu" {
			t.Fatalf("add = %v, %v; want web,relay,eu", n.Tags, err)
		}
		n, err = s.UpdateTags(t.Context(), "a", nil, []string{"relay", "nope"})
		if err != nil || strings.Join(n.Tags, ",") != "web,eu" {
			t.Fatalf("remove = %v, %v; want web,eu", n.Tags, err)
		}
		if got, err := s.Node(t.Context(), k); err != nil || strings.Join(got.Tags, ",") != "web,eu" {
			t.Fatalf("stored tags %v, %v", got.Tags, err)
		}
		if _, err := s.UpdateTags(t.Context(), "b", []string{"x"}, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("UpdateTags(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func TestRenameNode(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		secret := addToken(t, s, "t", true, time.Now().Add(time.Hour))
		ka, kb := newKey(t), newKey(t)
		for k, name := range map[crypto.PublicKey]string{ka: "desktop", kb: "laptop"} {
			if _, err := register(s, "t", secret, k, name); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name, from, to string
			wantErr        error
		}{
			{name: "to a free name", from: "desktop", to: "workstation"},
			{name: "to its own name", from: "laptop", to: "laptop"},
			{name: "to a taken name", from: "workstation", to: "laptop", wantErr: ErrNameTaken},
			{name: "an unknown node", from: "desktop", to: "pc", wantErr: ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n, err := s.RenameNode(t.Context(), tt.from, tt.to)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("RenameNode(%s, %s) = %v, want %v", tt.from, tt.to, err, tt.wantErr)
					}
					return
				}
				if err != nil || n.Name != tt.to {
					t.Fatalf("RenameNode(%s, %s) = %q, %v", tt.from, tt.to, n.Name, err)
				}
				if got, err := s.Node(t.Context(), n.Key); err != nil || got.Name != tt.to {
					t.Fatalf("stored name %q, %v; want %q", got.Name, err, tt.to)
				}
			})
		}
		// The old name is free again.
		if _, err := s.RenameNode(t.Context(), "laptop", "desktop"); err != nil {
			t.Fatalf("rename to a freed name: %v", err)
		}
	})
}
