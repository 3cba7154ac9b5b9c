package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Two coordinators on one database record the reports of the nodes they
// hold; each reads both. A coordinator drops only its own reports, and
// the changes keep the latest MaxPathChanges.
func TestPathsAcrossCoordinators(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		one, two := openTest(t, db), openTest(t, db)
		a, b, relay := newKey(t), newKey(t), newKey(t)
		at := time.UnixMilli(1_800_000_000_000)
		ra := PathReport{Key: a, Coordinator: "one", At: at, Relay: &relay,
			Entries:  []wire.PathEntry{{Peer: b, Kind: wire.PathRelayedUDP, Via: wire.ViaRelayNode, Why: wire.WhyHardNATs, RTT: 12 * time.Millisecond}},
			Software: wire.Software{Version: "v1", OS: "linux/amd64"}}
		rb := PathReport{Key: b, Coordinator: "two", At: at.Add(time.Second),
			Entries: []wire.PathEntry{{Peer: a, Kind: wire.PathDirectUDP, RTT: 4 * time.Millisecond}}}
		if err := one.WritePaths(t.Context(), "one", []PathReport{ra}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := two.WritePaths(t.Context(), "two", []PathReport{rb}, nil, []PathChange{{At: at, From: b, Peer: a, Was: wire.PathRelayedUDP, Now: wire.PathDirectUDP}}); err != nil {
			t.Fatal(err)
		}
		reports, changes, err := one.Paths(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		byKey := map[string]PathReport{}
		for _, r := range reports {
			byKey[r.Key.String()] = r
		}
		for _, want := range []PathReport{ra, rb} {
			if got := byKey[want.Key.String()]; !reflect.DeepEqual(got, want) {
				t.Errorf("report of %s:\n got %+v\nwant %+v", want.Key.Short(), got, want)
			}
		}
		if len(changes) != 1 || changes[0].From != b || changes[0].Now != wire.PathDirectUDP {
			t.Errorf("changes %+v", changes)
		}
		// b's stream ended on "one" (it was never there): two's report stays.
		if err := one.WritePaths(t.Context(), "one", nil, []crypto.PublicKey{a, b}, nil); err != nil {
			t.Fatal(err)
		}
		reports, _, err = two.Paths(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(reports) != 1 || reports[0].Key != b {
			t.Errorf("after one dropped a and b: %+v, want b's alone", reports)
		}
		var many []PathChange
		for i := range MaxPathChanges + 10 {
			many = append(many, PathChange{At: at.Add(time.Duration(i+1) * time.Millisecond), From: a, Peer: b, Was: wire.PathDirectUDP, Now: wire.PathRelayedUDP})
		}
		if err := one.WritePaths(t.Context(), "one", nil, nil, many); err != nil {
			t.Fatal(err)
		}
		_, changes, err = two.Paths(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != MaxPathChanges || !changes[len(changes)-1].At.Equal(many[len(many)-1].At) {
			t.Errorf("%d changes kept, the last at %v; want %d, the last at %v", len(changes), changes[len(changes)-1].At, MaxPathChanges, many[len(many)-1].At)
		}
	})
}
