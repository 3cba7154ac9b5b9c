package coordinator_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wire"
)

// TestMain stops the PostgreSQL cluster the tests on PostgreSQL start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A coordinator runs on PostgreSQL (--database) as on SQLite, and what it
// stored is another coordinator's, with its own data directory and
// certificate, on the same database: the nodes and the tokens.
func TestCoordinatorOnPostgres(t *testing.T) {
	db := pgtest.DB(t)
	cfg := testConfig(t)
	cfg.Database = db
	first := start(t, cfg)
	token := first.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, first).join(token, "laptop")
	first.stop()

	cfg2 := testConfig(t)
	cfg2.Database = db
	second := start(t, cfg2)
	if second.srv.Fingerprint() == first.srv.Fingerprint() {
		t.Fatal("the second coordinator shares the first one's certificate; want its own data directory")
	}
	nodes, err := second.srv.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].PublicKey != laptop.key() || nodes[0].Addresses[0] != laptop.reg.Self.Addresses[0] {
		t.Fatalf("nodes on the second coordinator = %+v, %v; want laptop at %v", nodes, err, laptop.reg.Self.Addresses)
	}
	desktop := newNode(t, second).join(token, "laptop")
	if desktop.reg.Self.Name != "laptop-2" || desktop.reg.Self.Addresses[0] == laptop.reg.Self.Addresses[0] {
		t.Fatalf("a node joining the second coordinator got %s at %v; want laptop-2 at the next address", desktop.reg.Self.Name, desktop.reg.Self.Addresses)
	}
}

// A node registering while the coordinator's PostgreSQL is down is told,
// once the store has retried for long enough, that the database is
// unreachable (503, a code the node retries), with nothing stored; the
// same registration succeeds once PostgreSQL is back.
func TestRegisterWhileDatabaseDown(t *testing.T) {
	cluster := pgtest.New(t, pgtest.Options{})
	cfg := testConfig(t)
	cfg.Database = cluster.DB(t)
	h := start(t, cfg)
	// Once one node has joined, the coordinator serves (it took its
	// lease on the database first).
	newNode(t, h).join(h.token(coordinator.TokenOptions{}), "desktop")
	token := h.token(coordinator.TokenOptions{})
	laptop := newNode(t, h)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	status, _, fail := h.register(token, laptop.priv, "laptop")
	if status != http.StatusServiceUnavailable || fail.Code != wire.ErrCodeInternal || !strings.Contains(fail.Error, "database is unreachable") {
		t.Fatalf("register with the database down: %d %s %q; want 503, internal, the database unreachable", status, fail.Code, fail.Error)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	// The single-use token was not consumed by the refused attempt.
	laptop.join(token, "laptop")
}
