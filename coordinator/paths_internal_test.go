package coordinator

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The page's history of path changes: a kind that changed between two
// reports on one stream, not a new stream's first report, and no more than
// maxPathChanges of them.
func TestPathHistory(t *testing.T) {
	tab := newPathTable()
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
	if len(h) != 1 || h[0].from != a || h[0].peer != b || h[0].was != wire.PathRelayedUDP || h[0].now != wire.PathDirectUDP {
		t.Fatalf("history %+v; want one change of a's path to b, relayed_udp to direct_udp", h)
	}
	for i := range maxPathChanges + 10 {
		report(s2, wire.PathKinds[i%2+1])
	}
	h = tab.history()
	if len(h) != maxPathChanges || !h[len(h)-1].at.Equal(at) {
		t.Fatalf("history of %d changes, the last at %v; want %d, the last at %v", len(h), h[len(h)-1].at, maxPathChanges, at)
	}
}
