package coordinator_test

import (
	"context"
	"os"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/pgtest"
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
