package node

import (
	"fmt"
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
	auth := relayAuth{self: self, peers: peers, designated: &designated}
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
