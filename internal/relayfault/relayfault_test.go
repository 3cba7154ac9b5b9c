package relayfault

import (
	"net"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// TestModes checks what each fault lets through, for frames the relay
// sends to a node that said hello with key self.
func TestModes(t *testing.T) {
	self, other := crypto.PublicKey{1: 1}, crypto.PublicKey{2: 2}
	node := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 9), Port: 41820}
	challenge := wire.RelayFrame{Type: wire.RelayChallenge, Challenge: make([]byte, wire.RelayChallengeLen)}.Marshal()
	echo := wire.AppendRelayData(nil, self, wire.AppendRelayEcho(nil, [wire.RelayEchoTokenLen]byte{}))
	fromPeer := wire.AppendRelayData(nil, other, wire.AppendRelayEcho(nil, [wire.RelayEchoTokenLen]byte{}))
	for _, tc := range []struct {
		mode                      Mode
		challenge, echo, fromPeer bool // dropped
	}{
		{None, false, false, false},
		{DropData, false, true, true},
		{DropPeerData, false, false, true},
		{Silent, true, true, true},
	} {
		c := Wrap(nil)
		c.remember(node, self)
		c.Set(tc.mode)
		for _, f := range []struct {
			name string
			pkt  []byte
			want bool
		}{{"challenge", challenge, tc.challenge}, {"echo", echo, tc.echo}, {"frame from a peer", fromPeer, tc.fromPeer}} {
			if got := c.drops(f.pkt, node); got != f.want {
				t.Errorf("mode %d: %s dropped %t, want %t", tc.mode, f.name, got, f.want)
			}
		}
	}
}
