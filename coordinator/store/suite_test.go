package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/testenv"
)

// The shared store suite runs every test written with eachBackend against
// both engines: SQLite in a temporary file, PostgreSQL on a throwaway
// cluster (internal/pgtest) that TestMain stops and removes. The tests
// mostly wait on PostgreSQL (stops, restarts, locks), so 8 run at once.
func TestMain(m *testing.M) {
	testenv.Parallel(8)
	os.Exit(pgtest.Main(m))
}

// backend makes fresh databases of one engine.
type backend struct {
	name  string
	fresh func(t *testing.T) string // the database, as Open takes it
}

// migrated is a PostgreSQL database with the schema applied, made once;
// eachBackend's tests start from copies of it, as the migrations, many
// small DDL transactions, cost the server more than the copy.
var migrated = pgtest.NewPrepared(func(ctx context.Context, url string) error {
	s, err := OpenPostgres(ctx, url)
	if err != nil {
		return err
	}
	return s.Close()
})

var (
	// backends' databases have the schema applied (PostgreSQL's) or not
	// yet (SQLite's, cheap to migrate): Open finds them alike.
	backends = []backend{
		{"sqlite", sqliteFile},
		{"postgres", func(t *testing.T) string { return migrated.DB(t) }},
	}
	// blankBackends' databases are empty, for the tests of migrations.
	blankBackends = []backend{
		{"sqlite", sqliteFile},
		{"postgres", func(t *testing.T) string { return pgtest.DB(t) }},
	}
)

func sqliteFile(t *testing.T) string { return filepath.Join(t.TempDir(), "c.db") }

// eachBackend runs test on a fresh database of each engine that Open
// finds current.
func eachBackend(t *testing.T, test func(t *testing.T, db string)) { runOn(t, backends, test) }

// eachBlankBackend runs test on a fresh, empty database of each engine.
func eachBlankBackend(t *testing.T, test func(t *testing.T, db string)) {
	runOn(t, blankBackends, test)
}

func runOn(t *testing.T, bs []backend, test func(t *testing.T, db string)) {
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) { test(t, b.fresh(t)) })
	}
}

func openTest(t *testing.T, db string) Store {
	t.Helper()
	s, err := Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// base gives tests either engine's shared core.
func (s *sqlDB) base() *sqlDB { return s }

// rawDB is a store's database, for tests that rewrite its schema.
func rawDB(s Store) *sql.DB { return s.(interface{ base() *sqlDB }).base().w }

var testPool = pool("100.88.0.0/16", "fd6d:6573:686e::/48")

func newKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// addToken stores a token and returns its secret.
func addToken(t testing.TB, s Store, id string, reusable bool, expires time.Time, tags ...string) string {
	t.Helper()
	_, secret, err := crypto.NewTokenCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(t.Context(), Token{ID: id, SecretHash: crypto.HashSecret(secret), Reusable: reusable,
		Tags: tags, Created: time.Now(), Expires: expires}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func register(s Store, tokenID, secret string, key crypto.PublicKey, name string) (Node, error) {
	return s.Register(context.Background(), Registration{TokenID: tokenID, Secret: secret, Key: key, Name: name, Pool: testPool, Now: time.Now()})
}
