package node_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node"
	"github.com/meshnode/meshnode/node/path"
)

// failoverDeadline bounds a node's move to another coordinator: a few
// seconds when things work, generous for a loaded machine.
const failoverDeadline = 30 * time.Second

// Two coordinators share one PostgreSQL database. Two nodes joined
// through A, before B started, hear of B; A then dies without a goodbye.
// Both nodes reconnect to B within seconds while their direct path keeps
// carrying traffic, untouched. A third node joins while A is down with a
// token made on A earlier, which names both: it registers through B and
// reaches the others.
func TestNodesFailOverToAnotherCoordinator(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{Database: pgtest.DB(t)})
	a := m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	b := m.AddNode("b", m.NAT(homeNAT("office")).NewHost("b", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{})
	waitDirect(t, a, b)
	onA := a.Engine.Status().Coordinator.URL

	cb := m.AddCoordinator("b", netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4"))
	for _, n := range []*meshlab.Node{a, b} {
		wait.For(t, failoverDeadline, n.Name+" hears of coordinator B", func() bool {
			c := n.Engine.Status().Coordinator
			return c.Connected && c.URL == onA && c.Known == 2
		})
	}
	var both string
	wait.For(t, failoverDeadline, "a token made on A names A and B", func() bool {
		tok, err := m.Coord.CreateToken(context.Background(), coordinator.TokenOptions{Expiry: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		both = tok.String()
		return len(tok.Coordinators()) == 2 && tok.More[0] == crypto.Coordinator{URL: cb.URL, Pin: cb.Server.Fingerprint()}
	})

	before := a.PathTo(b)
	lost := a.Engine.PathStats().PathsLost.Load() + b.Engine.PathStats().PathsLost.Load()
	m.CrashCoordinator()
	crashed := time.Now()
	// Traffic both ways for the whole failover: every transfer goes
	// through.
	moved := map[string]time.Duration{}
	for len(moved) < 2 {
		if time.Since(crashed) > failoverDeadline {
			t.Fatalf("after %v, moved to B: %v; want a and b", failoverDeadline, moved)
		}
		transfer(t, a, b, 16<<10)
		transfer(t, b, a, 16<<10)
		for _, n := range []*meshlab.Node{a, b} {
			if c := n.Engine.Status().Coordinator; c.Connected && c.URL == cb.URL {
				if _, ok := moved[n.Name]; !ok {
					moved[n.Name] = time.Since(crashed)
				}
			}
		}
	}
	for name, d := range moved {
		t.Logf("%s connected to B %v after A died", name, d.Round(time.Millisecond))
	}
	if after := a.PathTo(b); after.Path != path.PathDirect || after.Endpoint != before.Endpoint {
		t.Errorf("a's path to b changed during the failover: %+v, was %+v", after, before)
	}
	if n := a.Engine.PathStats().PathsLost.Load() + b.Engine.PathStats().PathsLost.Load() - lost; n != 0 {
		t.Errorf("a and b lost their direct path %d times during the failover", n)
	}

	// a keeps the list in its state file, B as the one to dial first.
	wait.For(t, failoverDeadline, "a's state file names B first and both", func() bool {
		st := readState(t, a)
		return st.CoordinatorURL == cb.URL && len(st.Coordinators) == 2 &&
			slices.Contains(st.Coordinators, crypto.Coordinator{URL: onA, Pin: m.Coord.Fingerprint()})
	})

	joined := time.Now()
	c := m.AddNode("c", m.NAT(homeNAT("cafe")).NewHost("c", netip.MustParseAddr("192.168.7.2")), meshlab.NodeOptions{Token: both})
	wait.For(t, failoverDeadline, "c connected to B", func() bool {
		st := c.Engine.Status().Coordinator
		return st.Connected && st.URL == cb.URL
	})
	t.Logf("c joined through B %v after it started, with A down", time.Since(joined).Round(time.Millisecond))
	waitDirect(t, c, a)
	transfer(t, c, a, 16<<10)
	transfer(t, b, c, 16<<10)
}

// A coordinator that hangs, or whose host is lost, closes no stream: its
// node would notice only at its next ping, up to a minute and its timeout
// later. Here coordinator A says goodbye in the database while every
// connection to it stays open and silent (the link is frozen). Node c, at
// B, sees a go offline while its direct path to a is up and tells a so;
// a checks its stream, gets no answer and moves to B within seconds, its
// path to c untouched.
func TestNodesLeaveAHungCoordinator(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{Database: pgtest.DB(t)})
	a := m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	cb := m.AddCoordinator("b", netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4"))
	c := m.AddNode("c", m.NAT(homeNAT("office")).NewHost("c", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{Token: cb.Token})
	onA := a.Engine.Status().Coordinator.URL
	wait.For(t, failoverDeadline, "a at A knows B, c at B", func() bool {
		sa, sc := a.Engine.Status().Coordinator, c.Engine.Status().Coordinator
		return sa.Connected && sa.URL == onA && sa.Known == 2 && sc.Connected && sc.URL == cb.URL
	})
	waitDirect(t, a, c)
	before := a.PathTo(c)
	lost := a.Engine.PathStats().PathsLost.Load()

	m.CoordLink.Freeze()
	m.StopCoordinator()
	stopped := time.Now()
	wait.For(t, failoverDeadline, "a connected to B", func() bool {
		st := a.Engine.Status().Coordinator
		return st.Connected && st.URL == cb.URL
	})
	t.Logf("a connected to B %v after A hung", time.Since(stopped).Round(time.Millisecond))
	if n := c.Engine.PathStats().OfflineSent.Load(); n == 0 {
		t.Error("c sent a no offline notice")
	}
	if n := a.Engine.PathStats().OfflineReceived.Load(); n == 0 {
		t.Error("a received no offline notice")
	}
	if after := a.PathTo(c); after.Path != path.PathDirect || after.Endpoint != before.Endpoint {
		t.Errorf("a's path to c changed: %+v, was %+v", after, before)
	}
	if n := a.Engine.PathStats().PathsLost.Load() - lost; n != 0 {
		t.Errorf("a lost its direct path %d times", n)
	}
	transfer(t, a, c, 16<<10)
}

// readState reads n's state file, which must be private to its owner.
func readState(t *testing.T, n *meshlab.Node) node.State {
	t.Helper()
	file := filepath.Join(n.StateDir(), node.StateFile)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v; want 0600", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st node.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return st
}
