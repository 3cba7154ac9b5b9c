package coordinator_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wire"
)

// serveRelay serves h's STUN and relay on a loopback UDP port until the
// test ends, and returns the port's address.
func serveRelay(t *testing.T, h *harness) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeSTUN(ctx, stunserver.Conns{Primary: conn}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeSTUN: %v", err)
		}
		conn.Close()
	})
	return conn.LocalAddr().String()
}

// Every node of a mesh served by two coordinators is given one relay,
// the first coordinator's (with its URL and pin, for its TCP relay),
// whichever coordinator it streams to; when
// that coordinator stops, the nodes of the other are moved to its relay.
func TestMeshRelayAcrossCoordinators(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	lease := coordinator.ShortLease(100*time.Millisecond, time.Second)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.Database, cfgB.Database = db, db
	a := start(t, cfgA, lease)
	relayA := serveRelay(t, a)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptopNode := newNode(t, a).join(token, "laptop")
	laptop := laptopNode.connect()
	keyA := laptopNode.reg.CoordinatorKey
	wantA := wire.MeshRelay{Key: keyA, Addr: relayA, URL: a.url, Pin: a.srv.Fingerprint()}
	eventually(t, func() bool { return laptop.mesh() == wantA }, "laptop on A is given A's relay")

	b := start(t, cfgB, lease)
	relayB := serveRelay(t, b)
	desk := newNode(t, b).join(token, "desk")
	keyB := desk.reg.CoordinatorKey
	if keyA != keyB {
		t.Fatal("the two coordinators have keys of their own; want the mesh's, shared through the database")
	}
	at := time.Now()
	deskStream := desk.connect()
	crossed(t, "desk on B is given A's relay, the coordinator up first", at, func() bool { return deskStream.mesh() == wantA })
	// B's own relay is recorded too, and changes nothing for anyone.
	eventually(t, func() bool { return laptop.mesh() == wantA && deskStream.mesh() == wantA }, "both stay on A's relay once B's is recorded")

	at = time.Now()
	a.stop()
	wantB := wire.MeshRelay{Key: keyB, Addr: relayB, URL: b.url, Pin: b.srv.Fingerprint()}
	crossed(t, "desk on B moves to B's relay once A said goodbye", at, func() bool { return deskStream.mesh() == wantB })
}

// A relay node suspended on a report to one coordinator is suspended for
// the nodes of the other too, at once, and for a coordinator that starts
// later: all nodes leave it together.
func TestRelaySuspensionAcrossCoordinators(t *testing.T) {
	t.Parallel()
	db, a, b := twoCoordinators(t)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	gw := newNode(t, a).join(a.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "gateway")
	sg := gw.connect()
	alice := newNode(t, a).join(token, "alice").connect()
	bob := newNode(t, b).join(token, "bob").connect()
	const addr = "198.18.0.77:3479"
	announce(t, sg, 2001, addr)
	for _, s := range []*stream{alice, bob} {
		eventually(t, func() bool { p, _ := s.peer(gw.key()); return p.Relay == addr }, "the gateway's relay offered")
	}
	k := gw.key()
	at := time.Now()
	if err := alice.send(wire.StreamMsg{Type: wire.MsgRelayReport, RelayKey: &k}); err != nil {
		t.Fatal(err)
	}
	suspended := func(s *stream) func() bool {
		return func() bool { p, _ := s.peer(k); return p.Relay == "" && !p.RelaySuspendedUntil.IsZero() }
	}
	eventually(t, suspended(alice), "alice on A sees the gateway suspended")
	crossed(t, "bob on B sees the gateway suspended on alice's report to A", at, suspended(bob))

	cfgC := testConfig(t)
	cfgC.Database = db
	c := start(t, cfgC)
	carol := newNode(t, c).join(token, "carol").connect()
	if p, _ := carol.peer(k); p.Relay != "" || p.RelaySuspendedUntil.IsZero() {
		t.Fatalf("carol on a coordinator started after the suspension is offered %+v; want it suspended", p)
	}
}

// A relay node that both ends of a pair report, each to its own
// coordinator, naming the other, is suspended: the first report waits in
// the database for the second.
func TestRelayReportsMeetAcrossCoordinators(t *testing.T) {
	t.Parallel()
	_, a, b := twoCoordinators(t)
	token := a.token(coordinator.TokenOptions{Reusable: true})
	gw := newNode(t, a).join(a.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "gateway")
	sg := gw.connect()
	aliceNode, bobNode := newNode(t, a).join(token, "alice"), newNode(t, b).join(token, "bob")
	alice, bob := aliceNode.connect(), bobNode.connect()
	const addr = "198.18.0.77:3479"
	announce(t, sg, 2001, addr)
	for _, s := range []*stream{alice, bob} {
		eventually(t, func() bool { p, _ := s.peer(gw.key()); return p.Relay == addr }, "the gateway's relay offered")
	}
	// A coordinator weighs a report only about a peer of the reporter
	// it knows: A hears of bob, registered through B, by a notice.
	eventually(t, func() bool {
		_, seesBob := alice.peer(bobNode.key())
		_, seesAlice := bob.peer(aliceNode.key())
		return seesBob && seesAlice
	}, "alice on A and bob on B see each other")
	k := gw.key()
	report := func(s *stream, about *node) {
		t.Helper()
		pk := about.key()
		if err := s.send(wire.StreamMsg{Type: wire.MsgRelayReport, RelayKey: &k, Peer: &pk}); err != nil {
			t.Fatal(err)
		}
	}
	report(alice, bobNode)
	eventually(t, func() bool {
		return a.metric("meshnode_coordinator_relay_reports_total", "verdict", "unconfirmed") == 1
	}, "alice's report waits")
	if p, _ := bob.peer(k); p.Relay != addr {
		t.Fatalf("the gateway suspended on alice's report alone: bob sees %+v", p)
	}
	at := time.Now()
	report(bob, aliceNode)
	for _, s := range []*stream{alice, bob} {
		crossed(t, "the gateway suspended once bob reported it to B", at, func() bool {
			p, _ := s.peer(k)
			return p.Relay == "" && !p.RelaySuspendedUntil.IsZero()
		})
	}
}
