package node_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/relayfault"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
)

// leaveDeadline bounds how long a mesh takes to leave a relay node that
// stopped carrying: a few relay checks (wire.RelayCheck) for the verdict,
// then one push of the peer map. Generous for a loaded machine.
const leaveDeadline = 90 * time.Second

// coordRelay is the lab coordinator's UDP relay, the fallback.
var coordRelay = netip.AddrPortFrom(meshlab.CoordIP, 3478).String()

// relayedViaNode starts a designated relay node with a public address and
// two nodes behind random-port symmetric NATs, which only a relay joins,
// and waits until both ends relay through the relay node.
func relayedViaNode(t *testing.T, m *meshlab.Mesh) (r, a, b *meshlab.Node) {
	t.Helper()
	return relayedViaNodeJoined(t, m, "", "")
}

// relayedViaNodeJoined is relayedViaNode with a and b joined with the
// tokens tokenA and tokenB ("": the lab coordinator's).
func relayedViaNodeJoined(t *testing.T, m *meshlab.Mesh, tokenA, tokenB string) (r, a, b *meshlab.Node) {
	t.Helper()
	tm, rtm := relayCheckTiming()
	r = m.AddNode("office-server", m.Lab.NewHost("office-server", netip.MustParseAddr("198.18.5.5")), meshlab.NodeOptions{Relay: true, Timing: &tm, RelayTiming: &rtm})
	ha, hb := natlab.Symmetric(), natlab.Symmetric()
	ha.Name, hb.Name = "carrier-a", "carrier-b"
	a = m.AddNode("a", m.NAT(ha).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{Token: tokenA, Timing: &tm, RelayTiming: &rtm})
	b = m.AddNode("b", m.NAT(hb).NewHost("b", netip.MustParseAddr("10.2.0.2")), meshlab.NodeOptions{Token: tokenB, Timing: &tm, RelayTiming: &rtm})
	waitRelayedVia(t, a, b, netip.AddrPortFrom(r.Host.IPs()[0], meshlab.RelayPort).String())
	return r, a, b
}

// relayCheckTiming is the production timing with the relay checks of the
// path manager and the relay client a second apart (wire.RelayCheck: 5 s),
// and a relay check ping given up after two (path.DefaultPingTimeout:
// 5 s). A verdict still takes wire.RelayCheckMisses unanswered checks in
// a row; the lab carries a packet in microseconds, so it comes sooner, for
// the same reason.
func relayCheckTiming() (path.Timing, relayclient.Timing) {
	tm := path.DefaultTiming(config.DefaultNode().Keepalive)
	tm.RelayCheck = time.Second
	tm.PingTimeout = 2 * time.Second
	return tm, relayclient.Timing{Check: time.Second}
}

// waitRelayedVia waits until a and b relay to each other through via.
func waitRelayedVia(t *testing.T, a, b *meshlab.Node, via string) time.Duration {
	t.Helper()
	return wait.For(t, leaveDeadline, a.Name+" and "+b.Name+" relayed through "+via, func() bool {
		pa, pb := a.PathTo(b), b.PathTo(a)
		return pa.Path == path.PathRelay && pa.Via == via && pb.Path == path.PathRelay && pb.Via == via
	})
}

// suspendedAt is when the coordinator's suspension of n's relay ends;
// zero when it is not suspended.
func suspendedAt(t *testing.T, m *meshlab.Mesh, n *meshlab.Node) time.Time {
	t.Helper()
	list, err := m.Coord.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range list {
		if w.Name == n.Name {
			return w.RelaySuspendedUntil
		}
	}
	t.Fatalf("no node %s at the coordinator", n.Name)
	return time.Time{}
}

// A designated relay node that stops carrying traffic (its relay drops
// every data frame, or passes the echoes it can recognise and drops the
// traffic between peers, or its relay server goes silent) is reported by
// the nodes that use it and suspended by the coordinator for every node at
// once: both ends of the relayed pair, and the relay node itself, move to
// the coordinator's relay, and traffic flows again.
func TestRelayNodeThatStopsCarryingIsLeft(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		fault relayfault.Mode
	}{
		{"drops every data frame", relayfault.DropData},
		{"drops peers' frames, passes echoes", relayfault.DropPeerData},
		{"relay server silent", relayfault.Silent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := meshlab.New(t, meshlab.Options{})
			r, a, b := relayedViaNode(t, m)
			transfer(t, a, b, 64<<10)

			r.RelayFault.Set(tt.fault)
			took := waitRelayedVia(t, a, b, coordRelay)
			t.Logf("a and b on the coordinator's relay %v after the fault", took)
			if suspendedAt(t, m, r).IsZero() {
				t.Fatal("the pair moved, but the coordinator did not suspend the relay")
			}
			if got := m.Metric("meshnode_coordinator_relays_suspended", "", ""); got != 1 {
				t.Errorf("relays_suspended = %v, want 1", got)
			}
			transfer(t, a, b, 64<<10)
			transfer(t, b, a, 64<<10)
			wait.For(t, pathDeadline, "the relay node itself on the coordinator's relay", func() bool {
				st := r.Engine.RelayStatus()
				return st.UDPBound && st.Addr.String() == coordRelay
			})
		})
	}
}

// A healthy relay node is never blamed for a dead peer. b's UDP dies while
// its coordinator stream lives on, so b stays online: a's relayed pings to
// b go unanswered and a reports it, but the coordinator waits for b's word
// about a, which a dead peer can't give. The relay stays designated, a
// keeps using it, and its echoes keep coming back.
func TestHealthyRelayIsNotBlamedForADeadPeer(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	r, a, b := relayedViaNode(t, m)
	dead := time.Now()
	b.Host.SetLoss(1)

	// Two of a's reports: a whole round of checks after the first, b has
	// had as long to report a (it can't: its own frames don't leave).
	took := wait.For(t, 2*leaveDeadline, "a's reports about b weighed", func() bool {
		return m.Metric("meshnode_coordinator_relay_reports_total", "verdict", "unconfirmed") >= 2
	})
	t.Logf("a reported b's silence twice %v after b's UDP died", took)
	wait.For(t, pathDeadline, "a's echo through the relay after b died", func() bool {
		return a.Engine.RelayStatus().Carried.After(dead)
	})
	if until := suspendedAt(t, m, r); !until.IsZero() {
		t.Fatalf("relay suspended until %v for a dead peer", until)
	}
	if got := m.Metric("meshnode_coordinator_relay_reports_total", "verdict", "suspended"); got != 0 {
		t.Fatalf("%v suspensions, want none", got)
	}
	want := netip.AddrPortFrom(r.Host.IPs()[0], meshlab.RelayPort)
	if st := a.Engine.RelayStatus(); st.Addr != want || !st.UDPBound {
		t.Fatalf("a's relay: %+v, want bound to the relay node %v", st, want)
	}
}
