package coordinator

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The page's history of path changes: a kind that changed between two
// reports on one stream, not a new stream's first report, and no more than
// store.MaxPathChanges of them.
func TestPathHistory(t *testing.T) {
	t.Parallel()
	tab := newPathTable(false)
	a, b := crypto.PublicKey{1}, crypto.PublicKey{2}
	s1, s2 := &session{}, &session{}
	at := time.Unix(1_800_000_000, 0)
	report := func(sess *session, kind wire.PathKind) {
		at = at.Add(time.Second)
		tab.set(a, nodePaths{sess: sess, at: at, entries: []wire.PathEntry{{Peer: b, Kind: kind}}})
	}
	report(s1, wire.PathRelayedUDP)
	report(s1, wire.PathRelayedUDP)
	report(s1, wire.PathDirectUDP)
	report(s2, wire.PathRelayedTCP)
	h := tab.history()
	if len(h) != 1 || h[0].From != a || h[0].Peer != b || h[0].Was != wire.PathRelayedUDP || h[0].Now != wire.PathDirectUDP {
		t.Fatalf("history %+v; want one change of a's path to b, relayed_udp to direct_udp", h)
	}
	for i := range store.MaxPathChanges + 10 {
		report(s2, wire.PathKinds[i%2+1])
	}
	h = tab.history()
	if len(h) != store.MaxPathChanges || !h[len(h)-1].At.Equal(at) {
		t.Fatalf("history of %d changes, the last at %v; want %d, the last at %v", len(h), h[len(h)-1].At, store.MaxPathChanges, at)
	}
}
