package node_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/relayfault"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/path"
)

// relaysRecorded waits until n coordinators on db have recorded their
// relays: the order they come up in is the order the mesh uses them in.
func relaysRecorded(t *testing.T, db string, n int) {
	t.Helper()
	wait.For(t, pathDeadline, "coordinators' relays recorded", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		var got int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM coordinators WHERE relay_key <> ''`).Scan(&got)
		return err == nil && got >= n
	})
}

// threeCoordinators starts a lab whose coordinator shares a database with
// two more, which come up in order: the lab's, second, third.
func threeCoordinators(t *testing.T) (m *meshlab.Mesh, second, third *meshlab.Coordinator) {
	t.Helper()
	db := pgtest.DB(t)
	m = meshlab.New(t, meshlab.Options{Database: db})
	relaysRecorded(t, db, 1)
	second = m.AddCoordinator("coordinator-2", netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.0.22"))
	relaysRecorded(t, db, 2)
	third = m.AddCoordinator("coordinator-3", netip.MustParseAddr("198.18.0.31"), netip.MustParseAddr("198.18.0.32"))
	return m, second, third
}

// Two nodes behind random-port symmetric NATs, each streaming to another
// coordinator of one mesh, can't go direct: they meet on one relay, the
// relay of the coordinator that came up first, which neither streams to,
// and carry TCP through it (WireGuard end to end, the relay forwards
// sealed packets). When that coordinator stops, both move to the relay
// of the next and traffic flows again.
func TestRelayAcrossCoordinators(t *testing.T) {
	t.Parallel()
	m, second, third := threeCoordinators(t)
	ha, hb := natlab.Symmetric(), natlab.Symmetric()
	ha.Name, hb.Name = "carrier-a", "carrier-b"
	a := m.AddNode("a", m.NAT(ha).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{Token: second.Token})
	b := m.AddNode("b", m.NAT(hb).NewHost("b", netip.MustParseAddr("10.2.0.2")), meshlab.NodeOptions{Token: third.Token})
	at := time.Now()
	relayedVia(t, a, b, meshlab.CoordRelay.String())
	t.Logf("a on coordinator 2 and b on coordinator 3 relayed through coordinator 1 after %v", time.Since(at).Round(time.Millisecond))
	transfer(t, a, b, 256<<10)
	transfer(t, b, a, 64<<10)

	at = time.Now()
	m.StopCoordinator()
	relayedVia(t, a, b, second.Relay.String())
	t.Logf("moved to coordinator 2's relay %v after coordinator 1 stopped", time.Since(at).Round(time.Millisecond))
	transfer(t, a, b, 256<<10)
	transfer(t, b, a, 64<<10)
}

// A node on a network that blocks UDP, streaming to one coordinator,
// reaches a peer behind a symmetric NAT that streams to another: it
// opens its TCP relay at the coordinator whose UDP relay the mesh uses,
// where the peer is bound, not at its own.
func TestUDPBlockedRelayAcrossCoordinators(t *testing.T) {
	t.Parallel()
	m, second, third := threeCoordinators(t)
	hard := natlab.Symmetric()
	hard.Name = "carrier"
	blocked := homeNAT("hotel")
	blocked.BlockUDP = true
	a := m.AddNode("a", m.NAT(hard).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{Token: second.Token})
	c := m.AddNode("c", m.NAT(blocked).NewHost("c", netip.MustParseAddr("10.3.0.2")), meshlab.NodeOptions{Token: third.Token})
	at := time.Now()
	tcpRelay := m.CoordURL() + wire.PathRelay
	wait.For(t, pathDeadline, "c relayed through coordinator 1's TCP relay, a through its UDP relay", func() bool {
		pc, pa := c.PathTo(a), a.PathTo(c)
		return pc.Path == path.PathRelay && pc.Via == tcpRelay && pa.Path == path.PathRelay && pa.Via == meshlab.CoordRelay.String()
	})
	t.Logf("relayed after %v", time.Since(at).Round(time.Millisecond))
	transfer(t, a, c, 256<<10)
	transfer(t, c, a, 64<<10)
}

// A designated relay node that carries the echoes it recognises and drops
// the traffic between peers is left by a pair split across two
// coordinators: each end reports it to its own coordinator, naming the
// other, the reports meet in the database, and both move to the relay of
// the mesh's coordinators together.
func TestRelayNodeLeftAcrossCoordinators(t *testing.T) {
	t.Parallel()
	m, second, third := threeCoordinators(t)
	r, a, b := relayedViaNodeJoined(t, m, second.Token, third.Token)
	transfer(t, a, b, 64<<10)
	r.RelayFault.Set(relayfault.DropPeerData)
	took := waitRelayedVia(t, a, b, meshlab.CoordRelay.String())
	t.Logf("a on coordinator 2 and b on coordinator 3 on the mesh's relay %v after the fault", took)
	transfer(t, a, b, 64<<10)
	transfer(t, b, a, 64<<10)
}
