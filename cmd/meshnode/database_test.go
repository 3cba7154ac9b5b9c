package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster TestAdminOnPostgres starts.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The admin commands take --database: a token made on one host is listed
// from another that has no data directory, through PostgreSQL.
func TestAdminOnPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	cfg := emptyConfig(t)
	out, err := runCLI(t, "token", "create", "--config", cfg, "--data-dir", t.TempDir(), "--database", db,
		"--public-url", "https://vpn.example.com:8443")
	if err != nil {
		t.Fatal(err)
	}
	tok := lastToken(t, out)
	out, err = runCLI(t, "token", "list", "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), "none"), "--database", db)
	if err != nil || !strings.Contains(out, tok.ID) {
		t.Fatalf("token list on another host = %v\n%s; want token %s", err, out, tok.ID)
	}
}

// A database setting that is neither PostgreSQL's URL nor a path is a
// usage error naming the key, without the password.
func TestDatabaseFlagRefusesOtherURLs(t *testing.T) {
	t.Parallel()
	code, out := run(t, "token", "list", "--config", emptyConfig(t), "--database", "mysql://u:secret@db.example.com/mesh")
	if code != exitUsage || !strings.Contains(out, "database") || strings.Contains(out, "secret") {
		t.Fatalf("exit %d, %q; want a usage error naming database, without the password", code, out)
	}
}
