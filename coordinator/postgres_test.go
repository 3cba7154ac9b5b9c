package coordinator_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wire"
)

// TestMain stops the PostgreSQL cluster the tests on PostgreSQL start.
// The tests mostly wait on leases, streams and PostgreSQL (the binary
// uses about a third of one core), so 8 run at once.
func TestMain(m *testing.M) {
	testenv.Parallel(8)
	os.Exit(pgtest.Main(m))
}

// A coordinator runs on PostgreSQL (--database) as on SQLite, and what it
// stored is another coordinator's, with its own data directory and
// certificate, on the same database: the nodes and the tokens.
func TestCoordinatorOnPostgres(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	cluster := pgtest.New(t, pgtest.Options{})
	cfg := testConfig(t)
	cfg.Database = cluster.DB(t)
	h := start(t, cfg, coordinator.StoreRetry(outageRetry))
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

// The store's retry schedule for TestRegisterWhileDatabaseDown, which
// waits for the store to give up: the defaults' shape (pauses doubling
// to 20 times the first, given up on after 150 times it), a tenth as
// long, so the test waits for the event, not the production constants.
var outageRetry = store.Retry{First: 10 * time.Millisecond, Max: 200 * time.Millisecond, Within: 1500 * time.Millisecond}

// A lease for TestPresenceAcrossDatabaseOutage: longer than the store's
// longest retry pause, so each coordinator renews within it once the
// database is back, and the outage outlasts it. The store retries as
// long as by default (what waits out the outage gives up after 15 s, not
// within it) but pauses at most 300 ms, not 3 s: on a busy machine a
// renewal still lands well within the lease.
var rideOutRetry = store.Retry{First: 10 * time.Millisecond, Max: 200 * time.Millisecond, Within: 15 * time.Second}

const (
	outageLeaseRenew = 250 * time.Millisecond
	outageLease      = 3 * time.Second
	outageLength     = outageLease + 500*time.Millisecond
	// outageAfter is how long the test watches once the database is
	// back: a false expiry could come only until a lease after the first
	// renewal that succeeds again (leaseReach), at most a renewal and a
	// retry pause (rideOutRetry.Max) after the restart; two seconds more
	// leave room for a busy machine.
	outageAfter = outageLease + 2*time.Second
)

// PostgreSQL down for longer than the coordinators' leases lets every
// lease lapse; once it is back, neither coordinator takes the other's
// nodes offline: each renews, and expires no one until the other has had
// a lease's time to. A node on each sees the other online throughout.
// Parallel: the renewals it times (every 250 ms) have the rest of a
// 3 s lease to land on a busy CPU, and however long PostgreSQL takes to
// restart, the coordinators read the leases as they were before the
// outage until then (liveSince).
func TestPresenceAcrossDatabaseOutage(t *testing.T) {
	t.Parallel()
	cluster := pgtest.New(t, pgtest.Options{})
	db := cluster.DB(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.Database, cfgB.Database = db, db
	short, retry := coordinator.ShortLease(outageLeaseRenew, outageLease), coordinator.StoreRetry(rideOutRetry)
	a, b := start(t, cfgA, short, retry), start(t, cfgB, short, retry)
	laptop, desk, deskStream := acrossPair(t, a, b)
	eventually(t, func() bool {
		p, ok := deskStream.peer(laptop.key)
		return ok && p.Online
	}, "desk sees laptop online on the other coordinator")

	// Watch both views from before the outage until two leases after it.
	var offline atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if p, _ := laptop.peer(desk.key()); !p.Online {
				offline.CompareAndSwap(nil, "laptop saw desk offline")
			}
			if p, _ := deskStream.peer(laptop.key); !p.Online {
				offline.CompareAndSwap(nil, "desk saw laptop offline")
			}
		}
	})
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	<-time.After(outageLength) // the outage's length is the scenario
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	<-time.After(outageAfter) // as long as a false expiry could come
	close(done)
	wg.Wait()
	if what := offline.Load(); what != nil {
		t.Fatalf("%s around a database outage of %v (lease %v)", what, outageLength, outageLease)
	}
}
