package loadgen

import (
	"context"
	"testing"
	"time"
)

// TestSmoke runs the load generator small, against a coordinator in this
// process, so that it keeps working: every node registers and converges,
// every change and churn reaches every peer. Both an open mesh and one
// scoped by a policy (set before the nodes register), with nodes spread
// over source addresses; and the herd at the end reconnects every node
// with a resumed map.
func TestSmoke(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		nodes, group, perSource int
		policyFirst             bool
	}{
		{"open", 50, 0, 0, false},
		{"groups", 50, 20, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, err := StartInProcess(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			rep, err := Run(context.Background(), target, Config{
				Nodes: tc.nodes, Group: tc.group, PerSource: tc.perSource, PolicyFirst: tc.policyFirst, Herd: true, Rounds: 2, Timeout: time.Minute,
				Progress: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Converged != tc.nodes {
				t.Errorf("%d of %d nodes converged", rep.Converged, tc.nodes)
			}
			peers := tc.nodes - 1
			if tc.group > 0 {
				peers = tc.group - 1
			}
			if len(rep.Change) != 2*peers || rep.ChangeMissed != 0 {
				t.Errorf("changes reached %d peers and missed %d; want %d and 0", len(rep.Change), rep.ChangeMissed, 2*peers)
			}
			if len(rep.Offline) != 2*peers || len(rep.Online) != 2*peers || rep.ChurnMissed != 0 {
				t.Errorf("churn reached %d and %d peers and missed %d; want %d each and 0", len(rep.Offline), len(rep.Online), rep.ChurnMissed, 2*peers)
			}
			if rep.ChurnWelcomeBytes == 0 {
				t.Error("no welcome measured for the churned nodes")
			}
			if rep.HerdConverged != tc.nodes || rep.HerdResumed != tc.nodes || rep.HerdWelcomeBytes == 0 {
				t.Errorf("herd: %d converged, %d resumed, %d bytes of welcomes; want %d, %d and some", rep.HerdConverged, rep.HerdResumed, rep.HerdWelcomeBytes, tc.nodes, tc.nodes)
			}
			if rep.ConvergeBytes == 0 || rep.Usage.RSS == 0 || rep.Register <= 0 {
				t.Errorf("report lacks figures: %+v", rep)
			}
		})
	}
}
