package node_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
)

// stallSpeed runs the path manager's timers this many times faster than
// production, so a stall of stallFor spans as many dead-path windows as a
// minute-long hang does at production timing (6 s with traffic).
const (
	stallSpeed = 10
	stallFor   = 6 * time.Second
)

// A coordinator that hangs (its TCP connections open, nothing answered) or
// answers slowly disturbs no established path and no heartbeat: the node
// never waits for it on a packet path or a timer. A third peer that can
// only be relayed keeps asking for rendezvous throughout, so the node does
// try to talk to the stalled coordinator.
func TestStalledCoordinatorDisturbsNoPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall func(p *meshlab.Proxy)
	}{
		{"hangs", func(p *meshlab.Proxy) { p.Freeze() }},
		{"answers-slowly", func(p *meshlab.Proxy) { p.SetDelay(2 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timing := path.DefaultTiming(config.DefaultNode().Keepalive).Scaled(stallSpeed)
			// The relayed peer is retried, with a rendezvous request, at
			// the shortest backoff throughout the stall: no quiet period
			// after its failed rounds either.
			timing.RetryMax = timing.RetryMin
			timing.QuietPeriod = 0
			opts := meshlab.NodeOptions{Timing: &timing}
			m := meshlab.New(t, meshlab.Options{})
			hard := natlab.Symmetric()
			hard.Name = "carrier"
			otherHard := natlab.Symmetric()
			otherHard.Name = "carrier-2"
			a := m.AddNode("a", m.NAT(hard).NewHost("a", netip.MustParseAddr("10.1.0.2")), opts)
			cone := natlab.FullCone()
			cone.Name = "cone"
			b := m.AddNode("b", m.NAT(cone).NewHost("b", netip.MustParseAddr("192.168.1.2")), opts)
			c := m.AddNode("c", m.NAT(otherHard).NewHost("c", netip.MustParseAddr("10.2.0.2")), opts)
			waitDirect(t, a, b)
			waitPath(t, a, c, path.PathRelay)
			// a retries c (and asks for rendezvous) only once it knows an
			// address of c's that it may punch: c's STUN mapping, which
			// reaches a in a later map update than c itself.
			wait.For(t, pathDeadline, "a knows a candidate of c's", func() bool {
				return a.PathTo(c).Candidates > 0
			})
			before := a.PathTo(b)
			lost := a.Engine.PathStats().PathsLost.Load()

			asked := func() uint64 {
				c := a.Engine.Status().Counters
				return c["coordinator_sent"] + c["coordinator_coalesced"] + c["coordinator_dropped"]
			}
			askedBefore := asked()
			tc.stall(m.CoordLink)
			stalled := time.Now()
			pongs := a.Engine.PathStats().PongsReceived.Load()
			// Traffic both ways for the whole stall keeps the heartbeats at
			// their active rate; every transfer must go through. One round
			// per heartbeat interval keeps both peers well inside the
			// active window, without spending the stall's CPU on the
			// transfers themselves.
			round := time.NewTicker(timing.ActiveHeartbeat)
			defer round.Stop()
			for time.Since(stalled) < stallFor {
				transfer(t, a, b, 64<<10)
				transfer(t, a, c, 16<<10)
				<-round.C
			}
			after := a.PathTo(b)
			if after.Path != path.PathDirect || after.Endpoint != before.Endpoint {
				t.Errorf("a's path to b moved during the stall: %+v, was %+v", after, before)
			}
			if n := a.Engine.PathStats().PathsLost.Load() - lost; n != 0 {
				t.Errorf("a lost a direct path %d times while the coordinator stalled", n)
			}
			// At least one answered heartbeat per dead-path window (the
			// node's own measure of a stall): a tick loop blocked on the
			// coordinator would send none, and its path would also never
			// be declared dead.
			want := uint64(stallFor / (time.Duration(timing.MissedPongs) * timing.ActiveHeartbeat))
			if got := a.Engine.PathStats().PongsReceived.Load() - pongs; got < want {
				t.Errorf("a got %d pongs during the stall, want at least %d (heartbeats stalled)", got, want)
			}
			if asked() == askedBefore {
				t.Error("a sent the coordinator nothing during the stall: the test did not exercise a stalled write")
			}
			m.CoordLink.Thaw()
			m.CoordLink.SetDelay(0)
			wait.For(t, pathDeadline, "a connected to the coordinator again", func() bool {
				return a.Engine.Status().Coordinator.Connected
			})
		})
	}
}
