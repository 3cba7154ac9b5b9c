package node

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/registry"
)

// A relay node serves only while the administrator designates it: the
// moment its own record loses the tag, it authorises no one, itself
// included, so a binding made before carries no more frames.
func TestRelayNodeServesOnlyWhileDesignated(t *testing.T) {
	key := func() crypto.PublicKey {
		k, err := crypto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	self, peer, stranger := key(), key(), key()
	peers := registry.New(self, nil)
	if err := peers.Upsert(wire.Node{Name: "peer", PublicKey: peer}); err != nil {
		t.Fatal(err)
	}
	var designated atomic.Bool
	auth := relayAuth{self: self, peers: peers, designated: &designated, pairs: new(atomic.Pointer[relayPairs])}
	for _, on := range []bool{true, false} {
		designated.Store(on)
		tests := []struct {
			name string
			got  bool
			want bool
		}{
			{"self known", auth.Known(self), on},
			{"peer known", auth.Known(peer), on},
			{"stranger known", auth.Known(stranger), false},
			{"self to peer", auth.ArePeers(self, peer), on},
			{"peer to self", auth.ArePeers(peer, self), on},
			{"peer to stranger", auth.ArePeers(peer, stranger), false},
			{"peer to itself", auth.ArePeers(peer, peer), false},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("designated=%v/%s", on, tt.name), func(t *testing.T) {
				if tt.got != tt.want {
					t.Errorf("got %v, want %v", tt.got, tt.want)
				}
			})
		}
	}
}

// Under an access policy a relay node relays only between nodes that may
// see each other, as the coordinator's relay pairs say: home and the
// office (a rule from one to the other), and the relay node itself with
// anyone; not home and the printer, in no rule together. Without a
// policy, and until the coordinator says, every pair; pairs that are not
// valid, no pair.
func TestRelayNodeRelaysOnlyPairsThatSeeEachOther(t *testing.T) {
	// The keys only name the nodes here.
	self, home, office, printer := crypto.PublicKey{1}, crypto.PublicKey{2}, crypto.PublicKey{3}, crypto.PublicKey{4}
	peers := registry.New(self, nil)
	for name, k := range map[string]crypto.PublicKey{"home": home, "office": office, "printer": printer} {
		if err := peers.Upsert(wire.Node{Name: name, PublicKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	feed := &relayFeed{log: slog.New(slog.DiscardHandler)}
	feed.designated.Store(true)
	auth := relayAuth{self: self, peers: peers, designated: &feed.designated, pairs: &feed.pairs}
	// Rule 0: home to office; rule 1: the printer to itself alone.
	policy := &wire.RelayPairs{Version: 3, Members: []wire.RelayMember{
		{Key: self, Relay: true},
		{Key: home, Src: []uint64{1}},
		{Key: office, Dst: []uint64{1}},
		{Key: printer, Src: []uint64{2}, Dst: []uint64{2}},
	}}
	tooWide := &wire.RelayPairs{Members: []wire.RelayMember{{Key: home, Src: make([]uint64, wire.MaxRelayPairWords+1)}}}
	steps := []struct {
		name    string
		pairs   *wire.RelayPairs
		welcome bool
		// want: home-office, office-home, home-printer, printer-self, office-self
		want [5]bool
	}{
		{"no word yet", nil, false, [5]bool{true, true, true, true, true}},
		{"a policy", policy, true, [5]bool{true, true, false, true, true}},
		{"a delta without pairs keeps them", nil, false, [5]bool{true, true, false, true, true}},
		{"pairs that are not valid", tooWide, false, [5]bool{}},
		{"the policy again", policy, false, [5]bool{true, true, false, true, true}},
		{"the policy removed", &wire.RelayPairs{Version: 4, Open: true}, false, [5]bool{true, true, true, true, true}},
		{"a welcome with a policy", policy, true, [5]bool{true, true, false, true, true}},
		{"a welcome without", nil, true, [5]bool{true, true, true, true, true}},
	}
	for _, st := range steps {
		feed.setPairs(st.pairs, st.welcome)
		got := [5]bool{auth.ArePeers(home, office), auth.ArePeers(office, home), auth.ArePeers(home, printer), auth.ArePeers(printer, self), auth.ArePeers(office, self)}
		if got != st.want {
			t.Errorf("%s: relays home-office, office-home, home-printer, printer-self, office-self: %v, want %v", st.name, got, st.want)
		}
	}
}
