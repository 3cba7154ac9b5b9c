package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/helperproc"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// twoCoordinators starts two coordinators, each with its own data
// directory and certificate, on one PostgreSQL database; each tune runs
// on both.
func twoCoordinators(t *testing.T, tune ...func(*coordinator.Server)) (db string, a, b *harness) {
	t.Helper()
	db = pgtest.DB(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.Database, cfgB.Database = db, db
	return db, start(t, cfgA, tune...), start(t, cfgB, tune...)
}

// crossed waits for cond, a change made through one coordinator as a
// node on another sees it, and logs how long it took.
func crossed(t *testing.T, what string, since time.Time, cond func() bool) {
	t.Helper()
	eventually(t, cond, "%s", what)
	t.Logf("%s: after %v", what, time.Since(since).Round(time.Millisecond))
}

// acrossPair joins laptop through a and desk through b, connects both,
// and waits until laptop sees desk online.
func acrossPair(t *testing.T, a, b *harness) (laptop *stream, desk *node, deskStream *stream) {
	t.Helper()
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop = newNode(t, a).join(token, "laptop").connect()
	desk = newNode(t, b).join(token, "desk")
	deskStream = desk.connect()
	eventually(t, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && p.Online
	}, "laptop sees desk online on the other coordinator")
	return laptop, desk, deskStream
}

// A change committed through one coordinator reaches the nodes connected
// to another, as a local change would: a registration, tags, a rename, a
// policy, routes approved, a removal.
func TestCoordinatorsFollowEachOther(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	ctx := context.Background()
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, a).join(token, "laptop").connect()

	at := time.Now()
	desk := newNode(t, b).join(token, "desk")
	crossed(t, "laptop on A sees desk, registered on B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"desk"}) })
	deskStream := desk.connect()
	if !slices.Equal(deskStream.peerNames(), []string{"laptop"}) {
		t.Fatalf("desk on B sees %v; want laptop", deskStream.peerNames())
	}

	at = time.Now()
	if _, err := b.srv.TagNode(ctx, "laptop", []string{"home"}, nil); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A gets its own tag, set through B", at, func() bool { return slices.Equal(laptop.ownTags(), []string{"home"}) })

	at = time.Now()
	if _, err := b.srv.RenameNode(ctx, "desk", "office"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A sees desk renamed through B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"office"}) })

	phone := newNode(t, b).join(token, "phone").connect()
	eventually(t, func() bool { return slices.Equal(laptop.peerNames(), []string{"office", "phone"}) }, "laptop sees phone")
	at = time.Now()
	if _, err := b.srv.SetPolicy(ctx, "rules:\n  - {from: tag:home, to: office, ports: [22], proto: tcp}\n"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "the policy set through B reaches laptop on A", at, func() bool {
		return laptop.accessFilter() != nil && slices.Equal(laptop.peerNames(), []string{"office"})
	})
	eventually(t, func() bool { return len(phone.peerNames()) == 0 }, "phone on B sees nobody under the policy")
	at = time.Now()
	if _, err := a.srv.SetPolicy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	crossed(t, "the policy cleared through A reaches phone on B", at, func() bool {
		f := phone.accessFilter()
		return f != nil && f.AllowAll && slices.Equal(phone.peerNames(), []string{"laptop", "office"})
	})

	at = time.Now()
	if _, err := b.srv.RemoveNode(ctx, "office"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A drops office, removed through B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"phone"}) })
	at = time.Now()
	if _, err := a.srv.RemoveNode(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "phone on B is told node_removed, removed through A", at, func() bool { return phone.errorCode() == "node_removed" })
	nodes, err := b.srv.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "laptop" {
		t.Fatalf("B's nodes after the removals: %+v, %v; want laptop", nodes, err)
	}
}

// A node connected to one coordinator is online, with its candidates and
// its stream's TCP candidate, for the nodes of another; offline there
// once its stream ends.
func TestPresenceAcrossCoordinators(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, a).join(token, "laptop").connect()
	desk := newNode(t, b).join(token, "desk")
	eventually(t, func() bool { return slices.Equal(laptop.peerNames(), []string{"desk"}) }, "laptop sees desk")

	at := time.Now()
	deskStream := desk.connect()
	crossed(t, "laptop on A sees desk online on B, with its TCP candidate", at, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && p.Online && slices.ContainsFunc(p.Endpoints, func(e wire.Endpoint) bool { return e.Kind == wire.EndpointTCP })
	})

	eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.9:41641"), Kind: wire.EndpointSTUN}}
	at = time.Now()
	if err := deskStream.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A gets the candidates desk reported on B", at, func() bool {
		p, _ := laptop.peer(desk.key())
		return slices.Contains(p.Endpoints, eps[0])
	})

	at = time.Now()
	deskStream.close()
	crossed(t, "laptop on A sees desk offline once its stream on B ends", at, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && !p.Online
	})
}

// helperCoordinatorDB, in a child's environment, makes it run
// TestHelperCoordinator: a coordinator on that database, to be killed;
// helperCoordinatorLease, if set, is its lease's length (renewed every
// testLeaseRenew), testLease without.
const (
	helperCoordinatorDB    = "MESHNODE_TEST_COORDINATOR_DB"
	helperCoordinatorLease = "MESHNODE_TEST_COORDINATOR_LEASE"
)

// helperLife bounds how long a helper coordinator waits to be killed.
const helperLife = 2 * time.Minute

// TestHelperCoordinator is a coordinator in a child process
// (helperproc), on the database its environment names, with a short
// lease. It prints its URL and pin, then serves until it is killed.
func TestHelperCoordinator(t *testing.T) {
	t.Parallel()
	db := os.Getenv(helperCoordinatorDB)
	if db == "" {
		t.Skip("runs only as TestCoordinatorDiesWithoutGoodbye's child")
	}
	lease := testLease
	if v := os.Getenv(helperCoordinatorLease); v != "" {
		var err error
		if lease, err = time.ParseDuration(v); err != nil {
			t.Fatalf("%s=%q: %v", helperCoordinatorLease, v, err)
		}
	}
	cfg := testConfig(t)
	cfg.Database = db
	h := start(t, cfg, coordinator.ShortLease(testLeaseRenew, lease))
	fmt.Printf("%s %s\n", h.url, h.srv.Fingerprint())
	<-time.After(helperLife) // the parent kills it long before
}

// The tests' lease: renewed every testLeaseRenew, lasting testLease.
const (
	testLeaseRenew = 100 * time.Millisecond
	testLease      = time.Second
)

// killedPair starts coordinator A here and B in a child process, both on
// one database with leases of length, joins laptop through A and desk
// through B, and kills B without a goodbye; it returns when.
func killedPair(t *testing.T, length time.Duration) (laptop *stream, desk *node, killed time.Time) {
	t.Helper()
	db := pgtest.DB(t)
	cfg := testConfig(t)
	cfg.Database = db
	a := start(t, cfg, coordinator.ShortLease(testLeaseRenew, length))
	cmd, out := helperproc.Start(t, "TestHelperCoordinator", helperCoordinatorDB+"="+db, helperCoordinatorLease+"="+length.String())
	var url, pin string
	if _, err := fmt.Fscanln(out, &url, &pin); err != nil {
		t.Fatalf("the helper coordinator's URL and pin: %v", err)
	}
	b := &harness{t: t, url: url, client: pinnedClient(t, pin)}
	up := time.Now()
	laptop, desk, _ = acrossPair(t, a, b)
	// A reads B's lock as a sign of death only once it saw it held, at
	// one of its renewals (store.ExpireUnlocked): a coordinator of an
	// older meshnode holds none.
	wait.For(t, waitFor, "A renewed twice since B started", func() bool { return time.Since(up) > 2*testLeaseRenew })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	return laptop, desk, time.Now()
}

// A coordinator killed without a goodbye has its nodes offline for the
// others within its lease.
func TestCoordinatorDiesWithoutGoodbye(t *testing.T) {
	t.Parallel()
	laptop, desk, killed := killedPair(t, testLease)
	crossed(t, "laptop on A sees desk offline within the killed coordinator's lease", killed, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && !p.Online
	})
}

// A killed coordinator's lease lock is free at once: the others take its
// nodes offline within a renewal or two, long before its lease would
// end.
func TestKilledCoordinatorsLockFrees(t *testing.T) {
	t.Parallel()
	const length = 5 * time.Second
	laptop, desk, killed := killedPair(t, length)
	crossed(t, "laptop on A sees desk offline after the killed coordinator's lock is free", killed, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && !p.Online
	})
	// The lease alone would have taken length-testLeaseRenew or more.
	if took := time.Since(killed); took >= length/2 {
		t.Fatalf("desk went offline %v after its coordinator was killed; want well within its lease (%v), through its free lock", took, length)
	}
}

// A rendezvous between nodes on different coordinators cues both: the
// requester by its own coordinator, the peer by its own, which the first
// asks through the database; each cue carries the other's candidates.
func TestRendezvousAcrossCoordinators(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	ls, desk, ds := acrossPair(t, a, b)
	eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.20:41641"), Kind: wire.EndpointSTUN}}
	if err := ls.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		q, _ := ds.peer(ls.key)
		return slices.Contains(q.Endpoints, eps[0])
	}, "desk on B gets laptop's candidates")

	peer := desk.key()
	at := time.Now()
	if err := ls.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &peer}); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A is cued towards desk", at, func() bool { return ls.punchesFrom(desk.key()) == 1 })
	crossed(t, "desk on B is cued towards laptop, with its candidates", at, func() bool {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		return len(ds.punches) == 1 && *ds.punches[0].Peer == ls.key && slices.Contains(ds.punches[0].Endpoints, eps[0])
	})
}

// After notices may have been missed (the store says resync), a
// coordinator reads the mesh again and pushes what differs: here a name
// and a presence changed behind every coordinator's back.
func TestCoordinatorResyncs(t *testing.T) {
	t.Parallel()
	db, a, b := twoCoordinators(t)
	laptop, desk, _ := acrossPair(t, a, b)

	raw, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(context.Background())
	for _, q := range []string{`UPDATE nodes SET name = 'renamed' WHERE name = 'desk'`, `DELETE FROM presence WHERE public_key = '` + desk.key().String() + `'`} {
		if _, err := raw.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A notice no store can read makes each read everything again.
	at := time.Now()
	if _, err := raw.Exec(t.Context(), `SELECT pg_notify('meshnode_changes', 'not a notice')`); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A sees what changed unannounced", at, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && p.Name == "renamed" && !p.Online
	})
}

// A node that moves to another coordinator while its old stream is not
// yet noticed dead is taken from that stream at once: the old
// coordinator ends it, and its nodes see the node online at the new one.
func TestNodeMovesToAnotherCoordinator(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, a).join(token, "laptop").connect()
	desk := newNode(t, a).join(token, "desk")
	old := desk.connect()
	eventually(t, func() bool {
		p, ok := laptop.peer(desk.key())
		return ok && p.Online
	}, "laptop sees desk online on A")

	// The coordinators share one key: the registration made through A
	// authenticates the stream to B.
	moved := &node{t: t, h: b, priv: desk.priv, reg: desk.reg}
	if k := b.challenge().CoordinatorKey; k != desk.reg.CoordinatorKey {
		t.Fatalf("B's coordinator key %s differs from A's %s", k.Short(), desk.reg.CoordinatorKey.Short())
	}
	at := time.Now()
	moved.connect()
	crossed(t, "A ends desk's old stream once desk streams to B", at, old.closed)
	if p, ok := laptop.peer(desk.key()); !ok || !p.Online {
		t.Fatalf("laptop's view of desk after it moved: %+v, %v; want online", p, ok)
	}
}

// Many nodes connecting to one coordinator at once are online for the
// nodes of another: their presence is written in batches and read in one
// query.
func TestManyNodesOnlineAcross(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, a).join(token, "laptop").connect()
	const many = 80
	nodes := make([]*node, many)
	for i := range nodes {
		nodes[i] = newNode(t, b).join(token, fmt.Sprintf("n%d", i))
	}
	eventually(t, func() bool { return len(laptop.peerNames()) == many }, "laptop sees the %d nodes registered through B", many)
	// All at once, as after a coordinator restarts: their presence
	// comes in few batches.
	at := time.Now()
	errs := make([]error, many)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			first, s, err := n.dial(nil)
			if err == nil && s == nil {
				err = fmt.Errorf("no welcome: %+v", first)
			}
			if err != nil {
				errs[i] = fmt.Errorf("stream of n%d: %w", i, err)
				return
			}
			t.Cleanup(s.close)
			s.resume()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	crossed(t, fmt.Sprintf("laptop on A sees the %d nodes online on B", many), at, func() bool {
		for _, n := range nodes {
			if p, ok := laptop.peer(n.key()); !ok || !p.Online {
				return false
			}
		}
		return true
	})
}

// listRenewal has a coordinator read the mesh's coordinators every
// 200 ms rather than every 2 s: they learn of one that starts or stops at
// a renewal, so TestTokenAndWelcomeListEveryCoordinator waits that long
// for each. The lease lasts as long as by default, 10 s: no coordinator
// there dies, and none may be taken for dead on a busy machine.
var listRenewal = coordinator.ShortLease(200*time.Millisecond, 10*time.Second)

// Every coordinator on the database is in a new token, each with its own
// pin, the one that made it first; a welcome lists them the same way, the
// sender first. A coordinator added later is in the welcomes and reaches
// the nodes already connected in a delta; tokens issued before it stay
// valid at every coordinator. One that stops is dropped from the list.
func TestTokenAndWelcomeListEveryCoordinator(t *testing.T) {
	t.Parallel()
	db, a, b := twoCoordinators(t, listRenewal)
	if a.srv.Fingerprint() == b.srv.Fingerprint() {
		t.Fatal("the two coordinators share a certificate; each must have its own")
	}
	at := func(h *harness) crypto.Coordinator {
		return crypto.Coordinator{URL: h.cfg.PublicURL, Pin: h.srv.Fingerprint()}
	}
	// B takes its lease as it starts serving, just after start returns.
	var text string
	var tok crypto.Token
	want := []crypto.Coordinator{at(a), at(b)}
	eventually(t, func() bool {
		text = a.token(coordinator.TokenOptions{Reusable: true})
		var err error
		if tok, err = crypto.ParseToken(text); err != nil {
			t.Fatal(err)
		}
		return slices.Equal(tok.Coordinators(), want)
	}, "a token from A names A then B, each with its pin")
	laptop := newNode(t, b).join(text, "laptop").connect()
	if want := []crypto.Coordinator{at(b), at(a)}; !slices.Equal(laptop.welcome.Coordinators, want) {
		t.Fatalf("B's welcome lists %+v; want %+v", laptop.welcome.Coordinators, want)
	}

	cfgC := testConfig(t)
	cfgC.Database = db
	c := start(t, cfgC, listRenewal)
	desk := newNode(t, c).join(text, "desk").connect()
	if got := desk.welcome.Coordinators; len(got) != 3 || got[0] != at(c) || !slices.Contains(got, at(a)) || !slices.Contains(got, at(b)) {
		t.Fatalf("C's welcome lists %+v; want C first, then A and B", got)
	}
	added := time.Now()
	crossed(t, "laptop, connected to B before C started, hears of C", added, func() bool {
		got := laptop.coordinatorList()
		return len(got) == 3 && got[0] == at(b) && slices.Contains(got, at(a)) && slices.Contains(got, at(c))
	})
	// A's tokens read the leases as they are made; its welcomes carry
	// what it read at its last renewal (C's lease, on A's own schedule,
	// not with B): once A has read it, its welcome names C too.
	eventually(t, func() bool {
		tok, err := crypto.ParseToken(a.token(coordinator.TokenOptions{}))
		return err == nil && slices.Contains(tok.Coordinators(), at(c))
	}, "a token from A names C")
	eventually(t, func() bool { return slices.Contains(coordinator.MeshList(a.srv), at(c)) }, "A reads C's lease at a renewal")
	phone := newNode(t, a).join(text, "phone").connect()
	if !slices.Contains(phone.welcome.Coordinators, at(c)) {
		t.Fatalf("A's welcome lists %+v; want C in it", phone.welcome.Coordinators)
	}
	c.stop()
	stopped := time.Now()
	crossed(t, "laptop hears that C stopped", stopped, func() bool {
		return slices.Equal(laptop.coordinatorList(), []crypto.Coordinator{at(b), at(a)})
	})
}

// `token create` without a coordinator on its host, on a shared
// database, names this host's coordinator (found by its certificate when
// no public URL is given) and every other one; a public URL whose
// coordinator serves another certificate is refused.
func TestOfflineTokenOnSharedDatabase(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	at := func(h *harness) crypto.Coordinator {
		return crypto.Coordinator{URL: h.cfg.PublicURL, Pin: h.srv.Fingerprint()}
	}
	eventually(t, func() bool {
		tok, err := crypto.ParseToken(a.token(coordinator.TokenOptions{}))
		return err == nil && len(tok.Coordinators()) == 2
	}, "both coordinators hold a lease")
	create := func(cfg config.Coordinator) (crypto.Token, error) {
		admin, err := coordinator.OpenAdmin(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		return admin.CreateToken(t.Context(), coordinator.TokenOptions{})
	}
	noURL := a.cfg
	noURL.PublicURL = ""
	otherURL := a.cfg
	otherURL.PublicURL = b.cfg.PublicURL
	for _, tt := range []struct {
		name    string
		cfg     config.Coordinator
		wantErr string
	}{
		{"public URL given", a.cfg, ""},
		{"found by the certificate", noURL, ""},
		{"another coordinator's URL", otherURL, "serves a certificate with pin " + b.srv.Fingerprint()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := create(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v; want %q", err, tt.wantErr)
				}
				return
			}
			if want := []crypto.Coordinator{at(a), at(b)}; err != nil || !slices.Equal(tok.Coordinators(), want) {
				t.Fatalf("token names %+v, %v; want %+v", tok.Coordinators(), err, want)
			}
		})
	}
}
