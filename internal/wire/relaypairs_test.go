package wire

import (
	"testing"

	"github.com/meshnode/meshnode/crypto"
)

// Relay pairs past the bounds, or listing a node twice, are refused.
func TestRelayPairsValidate(t *testing.T) {
	a, b := crypto.PublicKey{1}, crypto.PublicKey{2}
	for _, tc := range []struct {
		name string
		p    RelayPairs
		ok   bool
	}{
		{"open", RelayPairs{Open: true}, true},
		{"members", RelayPairs{Members: []RelayMember{{Key: a, Src: []uint64{1}}, {Key: b, Dst: make([]uint64, MaxRelayPairWords)}}}, true},
		{"open with members", RelayPairs{Open: true, Members: []RelayMember{{Key: a}}}, false},
		{"too many words", RelayPairs{Members: []RelayMember{{Key: a, Dst: make([]uint64, MaxRelayPairWords+1)}}}, false},
		{"a node twice", RelayPairs{Members: []RelayMember{{Key: a}, {Key: a, Relay: true}}}, false},
		{"too many members", RelayPairs{Members: make([]RelayMember, MaxRelayPairNodes+1)}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// Two members see each other when one is a source of a rule the other is
// a destination of, or either is a relay node.
func TestRelayMemberSees(t *testing.T) {
	src := RelayMember{Src: []uint64{0, 1 << 5}}
	dst := RelayMember{Dst: []uint64{0, 1 << 5}}
	other := RelayMember{Dst: []uint64{1 << 5}}
	relay := RelayMember{Relay: true}
	for _, tc := range []struct {
		name string
		a, b RelayMember
		want bool
	}{
		{"source to destination", src, dst, true},
		{"destination to source", dst, src, true},
		{"another rule", src, other, false},
		{"two destinations", dst, dst, false},
		{"a relay node", other, relay, true},
	} {
		if got := tc.a.Sees(&tc.b); got != tc.want {
			t.Errorf("%s: Sees = %v, want %v", tc.name, got, tc.want)
		}
	}
}
