package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/e2e/labtest"
	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wire"
)

// The stream that shows the path is left alone while PostgreSQL restarts:
// 8 s at 256 KiB/s, longer than the restart and the reconnections.
const (
	pgRestartStreamBytes = 2 << 20
	pgRestartStreamRate  = 256 << 10
)

// pgOutage is how long TestPostgresOutage keeps PostgreSQL down: longer
// than the store retries an operation (15 s) and than a coordinator's
// lease (10 s), so both give up and the lease lapses.
const pgOutage = 12 * time.Second

// pgEnv is a lab whose coordinators share one PostgreSQL cluster, run in
// the coordinators' namespace (they reach it on its loopback; nothing
// else does), with a join token for each coordinator. Its env's coord is
// the first coordinator, which removes the nodes of ended (sub)tests.
type pgEnv struct {
	env
	pg     *pgtest.Cluster
	coords []*netlab.Coordinator
	tokens []string
}

// newPGEnv builds a lab with n coordinators on one fresh PostgreSQL
// database. Without PostgreSQL the test skips, or fails under CI=true.
func newPGEnv(t *testing.T, n int) *pgEnv {
	t.Helper()
	bin := binary(t)
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	lab := labtest.NewLab(ctx, t, bin)
	ns, err := lab.CoordinatorHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &pgEnv{env: env{bin: bin, lab: lab}, pg: pgtest.New(t, pgtest.Options{Enter: ns.Do})}
	if e.coords, err = lab.StartCoordinators(ctx, n, e.pg.DB(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range e.coords {
				t.Logf("%s log (last %d lines):\n%s", c.Name(), logLines, c.Proc().Tail(logLines))
			}
		}
	})
	for _, c := range e.coords {
		tok, err := c.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens = append(e.tokens, tok)
	}
	e.coord, e.token = e.coords[0], e.tokens[0]
	return e
}

// nodeOn starts a node on h that joins through coordinator i, and
// checks that it is connected there. Its token is coordinator i's
// narrowed to name that coordinator alone: a token naming several has
// the node register through one of them at random (node.register), so
// that a fleet spreads; the welcome then tells the node of the others.
func (e *pgEnv) nodeOn(t *testing.T, i int, h *netlab.Host, name string, remove bool) *netlab.Node {
	t.Helper()
	tok, err := crypto.ParseToken(e.tokens[i])
	if err != nil {
		t.Fatal(err)
	}
	tok.More = nil
	n := e.startNode(t, h, netlab.NodeConfig{Name: name, Token: tok.String()}, remove)
	if st := mustStatus(t, n); st.Coordinator.URL != e.coords[i].URL() {
		t.Fatalf("%s is connected to %s; want %s (%s)", name, st.Coordinator.URL, e.coords[i].Name(), e.coords[i].URL())
	}
	return n
}

// waitPeer waits until every node in nodes lists peer online, or, with
// present false, no longer lists it.
func waitPeer(ctx context.Context, peer string, present bool, nodes ...*netlab.Node) error {
	return netlab.Poll(ctx, pathTimeout, netlab.PollInterval, func(ctx context.Context) error {
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			p, ok := st.Peer(peer)
			switch {
			case present && (!ok || !p.Online):
				return fmt.Errorf("%s: peer %s listed=%v online=%v", n.Name, peer, ok, p.Online)
			case !present && ok:
				return fmt.Errorf("%s still lists %s", n.Name, peer)
			}
		}
		return nil
	})
}

// splitPair builds three sites, starts a node on the first that joins
// through the first coordinator and one on the second through the
// second, and waits for their direct path; spare is the third site's
// host, for a node that joins later.
func (e *pgEnv) splitPair(t *testing.T, prefix string) (a, b *netlab.Node, spare *netlab.Host, direct pair) {
	t.Helper()
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.FullCone})
	sc := e.site(t, netlab.SiteConfig{Kind: netlab.FullCone})
	a = e.nodeOn(t, 0, sa.Hosts[0], prefix+"-a", true)
	b = e.nodeOn(t, 1, sb.Hosts[0], prefix+"-b", true)
	return a, b, sc.Hosts[0], mustDirect(t, a, b)
}

// pathUntouched checks that a and b still use the direct path they had
// before what happened.
func pathUntouched(t *testing.T, a, b *netlab.Node, before pair, what string) {
	t.Helper()
	after, err := observe(t.Context(), a, b)
	if err != nil || after.Path() != netlab.PathDirect || after.A.Endpoint != before.A.Endpoint || after.B.Endpoint != before.B.Endpoint {
		t.Errorf("path after %s: %s %s/%s (%v); want it untouched: direct %s/%s",
			what, after.Path(), after.A.Endpoint, after.B.Endpoint, err, before.A.Endpoint, before.B.Endpoint)
	}
}

// joinSeen starts a node on h that joins through coordinator i, and
// waits until every node in seen lists it online.
func (e *pgEnv) joinSeen(t *testing.T, i int, h *netlab.Host, name string, remove bool, seen ...*netlab.Node) *netlab.Node {
	t.Helper()
	start := time.Now()
	n := e.nodeOn(t, i, h, name, remove)
	if err := waitPeer(t.Context(), name, true, seen...); err != nil {
		t.Fatalf("%s joined through %s: %v", name, e.coords[i].Name(), err)
	}
	t.Logf("%s, joined through %s, online at the other nodes %.1f s after it started", name, e.coords[i].Name(), time.Since(start).Seconds())
	return n
}

// TestCoordinatorsOnPostgres: two coordinators share one PostgreSQL
// database; a node joins through each, and the two find each other and
// talk directly over the overlay, though neither coordinator saw the
// other's node register.
func TestCoordinatorsOnPostgres(t *testing.T) {
	e := newPGEnv(t, 2)
	sa := e.site(t, netlab.SiteConfig{Kind: netlab.PortRestricted})
	sb := e.site(t, netlab.SiteConfig{Kind: netlab.FullCone})
	a := e.nodeOn(t, 0, sa.Hosts[0], "pgc-a", true)
	b := e.nodeOn(t, 1, sb.Hosts[0], "pgc-b", true)
	mustDirect(t, a, b)
	mustPing(t, a, b, 3)
	mustPing(t, b, a, 3)
}

// TestPostgresRestart: PostgreSQL restarts (a fast shutdown, which ends
// every session, then a start) under two coordinators while their nodes
// stream over a direct path. The stream and the path are left alone, the
// nodes stay connected, and afterwards a node joining through one
// coordinator, and its removal through the other, reach every node:
// both coordinators are back on the database, and the nodes they had
// acknowledged are still there.
func TestPostgresRestart(t *testing.T) {
	e := newPGEnv(t, 2)
	a, b, spare, before := e.splitPair(t, "pgr")

	to := mustStatus(t, b).Me().V4()
	stream := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		res, err := netlab.Transfer{From: a.Host.NS, To: b.Host.NS, Addr: to,
			Size: pgRestartStreamBytes, Rate: pgRestartStreamRate, StallTimeout: stallTimeout}.Run(ctx)
		if err == nil {
			t.Logf("%d bytes streamed across the restart in %.1f s, longest stall %.2f s", res.Bytes, res.Elapsed.Seconds(), res.MaxStall.Seconds())
		}
		stream <- err
	}()
	stopped := time.Now()
	if err := e.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL stopped and started again in %.1f s", time.Since(stopped).Seconds())
	if err := <-stream; err != nil {
		t.Errorf("TCP over the direct path across the restart: %v", err)
	}
	if err := waitCoordinator(t.Context(), true, reconnectTimeout, a, b); err != nil {
		t.Errorf("nodes after the restart: %v", err)
	}
	pathUntouched(t, a, b, before, "the restart")

	// A node joins through the second coordinator: the first's node hears
	// of it through the database.
	c := e.joinSeen(t, 1, spare, "pgr-c", false, a, b)
	mustDirect(t, a, c)
	mustPing(t, a, c, 3)

	// Its removal, through the first coordinator, reaches the second's.
	removed := time.Now()
	if err := e.coords[0].RemoveNode(t.Context(), c.Name); err != nil {
		t.Fatal(err)
	}
	if err := waitPeer(t.Context(), c.Name, false, a, b); err != nil {
		t.Fatalf("a removal after the restart: %v", err)
	}
	t.Logf("%s removed through %s: gone from both nodes' maps in %.1f s", c.Name, e.coords[0].Name(), time.Since(removed).Seconds())
	mustPing(t, a, b, 3)
}

// TestPostgresOutage: PostgreSQL stays down for longer than the store
// retries and than the coordinators' leases. Meanwhile the nodes on the
// two coordinators keep their direct path and their streams; once it is
// back both coordinators recover by themselves: the nodes are online to
// each other (no coordinator takes the other's nodes offline for the
// lease both lost), and a node joining through the first is seen by the
// second's.
func TestPostgresOutage(t *testing.T) {
	e := newPGEnv(t, 2)
	a, b, spare, before := e.splitPair(t, "pgo")

	if err := e.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// The outage's length is the scenario, not a wait for something.
	select {
	case <-t.Context().Done():
		t.Fatal("test ended during the outage")
	case <-time.After(pgOutage):
	}
	mustPing(t, a, b, 3)
	if err := waitCoordinator(t.Context(), true, pathTimeout, a, b); err != nil {
		t.Errorf("nodes %v into the database outage: %v", pgOutage, err)
	}
	if err := e.pg.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := waitCoordinator(t.Context(), true, reconnectTimeout, a, b); err != nil {
		t.Fatalf("nodes after the database came back: %v", err)
	}
	t.Logf("both nodes connected, each other online, %.1f s after PostgreSQL came back", time.Since(back).Seconds())
	pathUntouched(t, a, b, before, "the outage")
	e.joinSeen(t, 0, spare, "pgo-c", true, a, b)
}

// maxFailoverLoss is how many of the probes sent across a coordinator's
// death may go unanswered: a few packets on a loaded machine; a path that
// was torn down and rebuilt loses seconds of them (ProbeInterval apart).
const maxFailoverLoss = 5

// waitOn waits until every node in nodes streams to coordinator c and
// knows known coordinators (any number, with known -1).
func waitOn(ctx context.Context, c *netlab.Coordinator, known int, timeout time.Duration, nodes ...*netlab.Node) error {
	return netlab.Poll(ctx, timeout, netlab.PollInterval, func(ctx context.Context) error {
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if got := st.Coordinator; !got.Connected || got.URL != c.URL() || (known >= 0 && got.Known != known) {
				return fmt.Errorf("%s: coordinator %s connected=%v, knows %d; want %s (%s), knowing %d",
					n.Name, got.URL, got.Connected, got.Known, c.Name(), c.URL(), known)
			}
		}
		return nil
	})
}

// TestCoordinatorKilled: of two coordinators on one PostgreSQL database,
// the one node A streams to is killed (SIGKILL by PID, no goodbye) while
// A probes node B, which streams to the other, over their direct path.
// A moves to the survivor within seconds, B stays there; the path is
// left alone (same endpoints, next to no probe lost); and a node joining
// with a token made before the kill, which names both coordinators,
// registers through the survivor and reaches A and B.
func TestCoordinatorKilled(t *testing.T) {
	coordinatorDies(t, "pgk", "killed", func(c *netlab.Coordinator) error { return c.Kill() })
}

// TestCoordinatorLost: as TestCoordinatorKilled, but the coordinator's
// host is lost rather than its process killed (netlab's Lose: the
// process stopped and every packet to or from it dropped), so no FIN or
// RST tells anyone. PostgreSQL notices from the lease lock's keepalive
// (about 5 s), which moves the mesh's relay that the joining node's
// punches need and shows A offline at the survivor; B, there, still has a
// direct path to A and tells A (wire.DiscoOffline), which checks its
// stream and moves, well before its own keepalive would have told it
// (wire.NodeKeepaliveDeadline, 33 s, after the last segment it had).
func TestCoordinatorLost(t *testing.T) {
	coordinatorDies(t, "pgl", "lost", func(c *netlab.Coordinator) error { return c.Lose(t.Context()) })
}

// coordinatorDies runs the scenarios of TestCoordinatorKilled and
// TestCoordinatorLost: end ends the coordinator that A streams to, in the
// way that how names.
func coordinatorDies(t *testing.T, prefix, how string, end func(*netlab.Coordinator) error) {
	e := newPGEnv(t, 2)
	a, b, spare, before := e.splitPair(t, prefix)
	dead, survivor := e.coords[0], e.coords[1]
	if err := waitOn(t.Context(), dead, 2, pathTimeout, a); err != nil {
		t.Fatal(err)
	}
	if err := waitOn(t.Context(), survivor, 2, pathTimeout, b); err != nil {
		t.Fatal(err)
	}
	// C's token, made on the coordinator about to die, names both once
	// it has read the other's lease (a renewal, 2 s, after both started).
	var cToken string
	for deadline := time.Now().Add(pathTimeout); ; {
		s, err := dead.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := crypto.ParseToken(s)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(tok.Coordinators()); n == 2 {
			cToken = s
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the token made on %s names %d coordinators; want both", dead.Name(), n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	probe, err := netlab.StartProber(t.Context(), a.Host.NS, b.Host.NS, mustStatus(t, b).Me().V4())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, err := probe.RecoveredAfter(t.Context(), time.Now(), pathTimeout); err != nil {
		t.Fatalf("probes %s→%s before %s was %s: %v", a.Name, b.Name, dead.Name(), how, err)
	}

	ended := time.Now()
	if err := end(dead); err != nil {
		t.Fatal(err)
	}
	// Nodes that end remove themselves through the survivor.
	e.coord = survivor
	if err := waitOn(t.Context(), survivor, -1, wire.NodeKeepaliveDeadline+pathTimeout, a); err != nil {
		t.Fatalf("%s after %s was %s: %v", a.Name, dead.Name(), how, err)
	}
	moved := time.Since(ended)
	t.Logf("%s streams to %s %.1f s after %s was %s", a.Name, survivor.Name(), moved.Seconds(), dead.Name(), how)
	if how == "lost" {
		// Its peer at the survivor saw it offline while their direct
		// path was up and told it so: it checked its stream rather than
		// wait for its keepalive (wire.NodeKeepaliveDeadline) or its next
		// ping.
		sa, sb := mustStatus(t, a), mustStatus(t, b)
		t.Logf("offline notices sent by %s: %d; heard by %s: %d; its stream checks: %d", b.Name, sb.Counters["offline_notices_sent"], a.Name, sa.Counters["offline_notices_heard"], sa.Counters["coordinator_checks"])
		if sa.Counters["coordinator_checks"] == 0 || moved >= wire.NodeKeepaliveDeadline {
			t.Errorf("%s moved after %v with %d stream checks: its peer's offline notice should have made it check (%v keepalive)", a.Name, moved.Round(100*time.Millisecond), sa.Counters["coordinator_checks"], wire.NodeKeepaliveDeadline)
		}
	}
	if err := waitOn(t.Context(), survivor, -1, pathTimeout, b); err != nil {
		t.Errorf("%s after %s was %s: %v", b.Name, dead.Name(), how, err)
	}
	if err := waitPeer(t.Context(), a.Name, true, b); err != nil {
		t.Errorf("%s after the failover: %v", b.Name, err)
	}
	pathUntouched(t, a, b, before, dead.Name()+" was "+how)

	joined := time.Now()
	c := e.startNode(t, spare, netlab.NodeConfig{Name: prefix + "-c", Token: cToken}, true)
	if err := waitOn(t.Context(), survivor, -1, pathTimeout, c); err != nil {
		t.Fatalf("%s, joining with a token naming both: %v", c.Name, err)
	}
	if err := waitPeer(t.Context(), c.Name, true, a, b); err != nil {
		t.Fatalf("%s joined with %s dead: %v", c.Name, dead.Name(), err)
	}
	t.Logf("%s, joined with %s dead, online at the other nodes %.1f s after it started", c.Name, dead.Name(), time.Since(joined).Seconds())
	// Up to a few seconds, not the tenths of a join with both
	// coordinators up: the mesh's relay, which carries the punch's
	// "ready", is the dead coordinator's until a survivor sees its lease
	// lock free (a renewal, 2 s, after PostgreSQL has ended a lost host's
	// lock session), and a punch meanwhile waits out its hold.
	mustDirect(t, c, a)
	mustDirect(t, c, b)
	// The probes' replies from before the pings have come by the end of
	// them (an overlay RTT is far under their 0.4 s each).
	pinged := time.Now()
	mustPing(t, c, a, 3)
	mustPing(t, c, b, 3)

	// Once the dead coordinator's lease lapses (10 s), the survivor no
	// longer lists it: every node knows the survivor alone.
	if err := waitOn(t.Context(), survivor, 1, pathTimeout, a, b, c); err != nil {
		t.Errorf("after %s was %s: %v", dead.Name(), how, err)
	}

	sent, answered := probe.Answered(ended, pinged)
	t.Logf("probes %s→%s from when %s was %s until %s was direct to both (%.1f s): %d sent, %d answered",
		a.Name, b.Name, dead.Name(), how, c.Name, pinged.Sub(ended).Seconds(), sent, answered)
	if sent == 0 || sent-answered > maxFailoverLoss {
		t.Errorf("%d of %d probes lost across the failover; want at most %d", sent-answered, sent, maxFailoverLoss)
	}
}
