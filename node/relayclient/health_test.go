package relayclient

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/relayfault"
	"github.com/meshnode/meshnode/internal/wait"
)

// checkTiming runs the relay node checks fast.
var checkTiming = func() Timing {
	t := fastTiming
	t.Check = 100 * time.Millisecond
	return t
}()

// relayNodeSetup is a node bound to a relay node's relay, with the
// coordinator's relay as the fallback and witness.
type relayNodeSetup struct {
	coord, relay *relayServer
	n            *testNode
	reports      chan report
}

func newRelayNodeSetup(t *testing.T) *relayNodeSetup {
	t.Helper()
	s := &relayNodeSetup{coord: startRelay(t), relay: startRelay(t), reports: make(chan report, 16)}
	s.n = newTestNode(t, checkTiming, withReports(s.reports))
	s.coord.auth.add(s.n.pub)
	s.relay.auth.add(s.n.pub)
	s.n.relays.SetCandidates(s.coord.candidate(), []Candidate{s.relay.candidate()})
	s.n.waitRoute(t, "route via the relay node", udpRouteTo(s.relay.udp))
	return s
}

// rounds waits until the node has judged n more check rounds.
func (s *relayNodeSetup) rounds(t *testing.T, n uint64) {
	t.Helper()
	want := s.n.relays.Stats.Checks.Load() + n
	wait.For(t, waitTimeout, "check rounds", func() bool { return s.n.relays.Stats.Checks.Load() >= want })
}

// TestRelayNodeChecks makes the relay node misbehave in each way and
// checks what the node reports: a relay that drops all data or goes
// silent is reported on the echo's evidence; one that carries, one that
// passes echoes (its peer traffic is the path manager's evidence), and a
// node whose own network is down report nothing.
func TestRelayNodeChecks(t *testing.T) {
	tests := []struct {
		name         string
		relay, coord relayfault.Mode
		reported     bool
	}{
		{"a relay that carries is not reported", relayfault.None, relayfault.None, false},
		{"a relay that drops every data frame is reported", relayfault.DropData, relayfault.None, true},
		{"a relay that goes silent while the coordinator's answers is reported", relayfault.Silent, relayfault.None, true},
		{"a relay that passes echoes is not reported on echoes", relayfault.DropPeerData, relayfault.None, false},
		{"this node's network down (both silent): nothing is reported", relayfault.Silent, relayfault.Silent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRelayNodeSetup(t)
			s.relay.fault.Set(tt.relay)
			s.coord.fault.Set(tt.coord)
			if tt.reported {
				select {
				case r := <-s.reports:
					if r.relay != s.relay.key.Public() || r.peer != nil {
						t.Fatalf("reported %s (peer %v), want the relay node %s on its echoes", r.relay.Short(), r.peer, s.relay.key.Public().Short())
					}
				case <-time.After(waitTimeout):
					t.Fatalf("no report after %v (%d rounds)", waitTimeout, s.n.relays.Stats.Checks.Load())
				}
				return
			}
			s.rounds(t, 3*checkMisses)
			select {
			case r := <-s.reports:
				t.Fatalf("reported %s (peer %v), want no report", r.relay.Short(), r.peer)
			default:
			}
			if tt.relay == relayfault.None && s.n.relays.Status().Carried.IsZero() {
				t.Fatalf("status %+v: no echo carried", s.n.relays.Status())
			}
		})
	}
}

// TestPeerEvidence feeds the path manager's evidence (relayed pings to a
// peer unanswered) and checks that only evidence about the relay node in
// use, alive since, is reported. A report for a marker peer follows each
// case: reports come in order, so the first one shows what the case did.
func TestPeerEvidence(t *testing.T) {
	peer, marker := newKey(t).Public(), newKey(t).Public()
	tests := []struct {
		name     string
		via      func(s *relayNodeSetup) netip.AddrPort
		since    time.Duration // before now
		reported bool
	}{
		{"through the relay in use, confirmed since: reported", func(s *relayNodeSetup) netip.AddrPort { return s.relay.udp }, time.Minute, true},
		{"through another relay: not reported", func(s *relayNodeSetup) netip.AddrPort { return s.coord.udp }, time.Minute, false},
		{"relay unconfirmed since the first ping: not reported", func(s *relayNodeSetup) netip.AddrPort { return s.relay.udp }, -time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRelayNodeSetup(t)
			s.n.relays.PeerUnanswered(peer, tt.via(s), time.Now().Add(-tt.since))
			s.n.relays.PeerUnanswered(marker, s.relay.udp, time.Now().Add(-time.Minute))
			want := marker
			if tt.reported {
				want = peer
			}
			select {
			case r := <-s.reports:
				if r.relay != s.relay.key.Public() || r.peer == nil || *r.peer != want {
					t.Fatalf("first report: relay %s peer %v, want relay %s peer %s", r.relay.Short(), r.peer, s.relay.key.Public().Short(), want.Short())
				}
			case <-time.After(waitTimeout):
				t.Fatalf("no report after %v", waitTimeout)
			}
		})
	}
}

// TestCoordinatorRelayIsNotChecked: the coordinator's relay is the
// fallback, so it is neither checked nor reported. Evidence about it is
// followed by a marker report through a relay node: it must come first.
func TestCoordinatorRelayIsNotChecked(t *testing.T) {
	coord := startRelay(t)
	reports := make(chan report, 4)
	n := newTestNode(t, checkTiming, withReports(reports))
	coord.auth.add(n.pub)
	n.relays.SetCandidates(coord.candidate(), nil)
	n.waitRoute(t, "route via the coordinator's relay", udpRouteTo(coord.udp))
	coord.fault.Set(relayfault.DropData)
	n.relays.PeerUnanswered(newKey(t).Public(), coord.udp, time.Now().Add(-time.Minute))
	checks := n.relays.Stats.Checks.Load()

	node := startRelay(t)
	node.auth.add(n.pub)
	n.relays.SetCandidates(coord.candidate(), []Candidate{node.candidate()})
	n.waitRoute(t, "route via the relay node", udpRouteTo(node.udp))
	marker := newKey(t).Public()
	n.relays.PeerUnanswered(marker, node.udp, time.Now().Add(-time.Minute))
	select {
	case r := <-reports:
		if r.relay != node.key.Public() || r.peer == nil || *r.peer != marker {
			t.Fatalf("first report: relay %s peer %v, want the marker through the relay node", r.relay.Short(), r.peer)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no report after %v", waitTimeout)
	}
	if checks != 0 {
		t.Fatalf("%d check rounds on the coordinator's relay, want none", checks)
	}
}

// TestOnCheckNamesTheRelayNode: the path manager is told to check the
// relay node while bound to it, and nothing once back on the
// coordinator's relay.
func TestOnCheckNamesTheRelayNode(t *testing.T) {
	coord, node := startRelay(t), startRelay(t)
	checks := make(chan netip.AddrPort, 16)
	n := newTestNode(t, checkTiming, func(o *Options) { o.OnCheck = func(a netip.AddrPort) { checks <- a } })
	coord.auth.add(n.pub)
	node.auth.add(n.pub)
	for _, step := range []struct {
		name  string
		nodes []Candidate
		want  netip.AddrPort
	}{
		{"bound to the relay node: check it", []Candidate{node.candidate()}, node.udp},
		{"back on the coordinator's relay: check nothing", nil, netip.AddrPort{}},
	} {
		n.relays.SetCandidates(coord.candidate(), step.nodes)
		select {
		case got := <-checks:
			if got != step.want {
				t.Fatalf("%s: OnCheck(%v), want %v", step.name, got, step.want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no OnCheck after %v", step.name, waitTimeout)
		}
	}
}
