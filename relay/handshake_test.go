package relay

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestHandshakeUDP(t *testing.T) {
	tests := []struct {
		name string
		// run does the handshake from node (priv, known to the
		// coordinator unless unknown) and, if needed, from other, a
		// second socket; it returns the frame to send as the auth and
		// the socket to send it from.
		unknown bool
		auth    func(t *testing.T, h *harness, n, other *udpNode) (frame []byte, from *udpNode)
		want    result
		bound   int // nodes bound afterwards
	}{
		{
			name: "real proof binds",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				return authFrame(t, n.priv, h.coord.Public(), hello(n).Challenge), n
			},
			want:  resBound,
			bound: 1,
		},
		{
			name: "proof by another key",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				c := hello(n).Challenge
				proof, err := crypto.Proof(newKey(t), h.coord.Public(), wire.RelayProofLabel, c)
				if err != nil {
					t.Fatal(err)
				}
				return wire.RelayFrame{Type: wire.RelayAuth, Key: n.pub, Challenge: c, Proof: proof}.Marshal(), n
			},
			want: resBadProof,
		},
		{
			name: "proof with another label",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				c := hello(n).Challenge
				proof, err := crypto.Proof(n.priv, h.coord.Public(), "stream", c)
				if err != nil {
					t.Fatal(err)
				}
				return wire.RelayFrame{Type: wire.RelayAuth, Key: n.pub, Challenge: c, Proof: proof}.Marshal(), n
			},
			want: resBadProof,
		},
		{
			name:    "unknown key",
			unknown: true,
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				return authFrame(t, n.priv, h.coord.Public(), hello(n).Challenge), n
			},
			want: resUnknownKey,
		},
		{
			name: "challenge issued to another source",
			auth: func(t *testing.T, h *harness, n, other *udpNode) ([]byte, *udpNode) {
				return authFrame(t, n.priv, h.coord.Public(), hello(n).Challenge), other
			},
			want: resBadChallenge,
		},
		{
			name: "challenge issued for another key",
			auth: func(t *testing.T, h *harness, n, other *udpNode) ([]byte, *udpNode) {
				other.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
				c := other.expect(wire.RelayChallenge).Challenge
				return authFrame(t, other.priv, h.coord.Public(), c), other
			},
			want: resBadChallenge,
		},
		{
			name: "challenge never issued",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				hello(n)
				return authFrame(t, n.priv, h.coord.Public(), randomBytes(wire.RelayChallengeLen)), n
			},
			want: resBadChallenge,
		},
		{
			name: "challenge expired",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				c := hello(n).Challenge
				h.clock.advance(challengeTTL + time.Second)
				return authFrame(t, n.priv, h.coord.Public(), c), n
			},
			want: resBadChallenge,
		},
		{
			name: "challenge used twice",
			auth: func(t *testing.T, h *harness, n, _ *udpNode) ([]byte, *udpNode) {
				c := hello(n).Challenge
				n.send(authFrame(t, n.priv, h.coord.Public(), c))
				n.expect(wire.RelayOK)
				return authFrame(t, n.priv, h.coord.Public(), c), n
			},
			want:  resBadChallenge,
			bound: 1, // by the first use
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, true)
			n := h.newUDPNode(t, newKey(t))
			other := h.newUDPNode(t, newKey(t))
			if !tt.unknown {
				h.auth.add(n.pub, other.pub)
			}
			frame, from := tt.auth(t, h, n, other)
			before := h.count(tt.want)
			from.send(frame)
			h.waitCount(t, tt.want, before+1)
			if tt.want == resBound {
				from.expect(wire.RelayOK)
			} else {
				// Rejected: no OK was sent (the next frame answers a
				// new hello).
				from.send(wire.RelayFrame{Type: wire.RelayHello, Key: from.pub}.Marshal())
				from.expect(wire.RelayChallenge)
			}
			if got := h.s.boundCount(); got != tt.bound {
				t.Fatalf("bound nodes = %d, want %d", got, tt.bound)
			}
		})
	}
}

// hello sends a hello from n and returns the challenge.
func hello(n *udpNode) wire.RelayFrame {
	n.t.Helper()
	n.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
	return n.expect(wire.RelayChallenge)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestRepeatedHelloSameChallenge: a client retrying hello faster than the
// round trip must still be able to answer the first challenge.
func TestRepeatedHelloSameChallenge(t *testing.T) {
	h := newHarness(t, false)
	n := h.newUDPNode(t, newKey(t))
	h.auth.add(n.pub)
	first := hello(n).Challenge
	second := hello(n).Challenge
	if !bytes.Equal(first, second) {
		t.Fatalf("second hello got a new challenge; an answer to the first would fail")
	}
	n.send(authFrame(t, n.priv, h.coord.Public(), first))
	n.expect(wire.RelayOK)
}
