package relay

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// bindDirect binds priv at from through HandlePacket alone; frames to from
// go to sink.
func bindDirect(tb testing.TB, s *Server, coord crypto.PublicKey, priv crypto.PrivateKey, from netip.AddrPort, sink func([]byte, netip.AddrPort) error) {
	tb.Helper()
	var last []byte
	capture := func(p []byte, _ netip.AddrPort) error { last = append(last[:0], p...); return nil }
	s.HandlePacket(wire.RelayFrame{Type: wire.RelayHello, Key: priv.Public()}.Marshal(), from, capture)
	f, err := wire.ParseRelay(last)
	if err != nil || f.Type != wire.RelayChallenge {
		tb.Fatalf("hello: got %x, want a challenge", last)
	}
	proof, err := crypto.Proof(priv, coord, wire.RelayProofLabel, f.Challenge)
	if err != nil {
		tb.Fatal(err)
	}
	s.HandlePacket(wire.RelayFrame{Type: wire.RelayAuth, Key: priv.Public(), Challenge: f.Challenge, Proof: proof}.Marshal(), from, sink)
}

// BenchmarkForwardUDP measures the relay's per-packet cost between two UDP
// nodes, without the sockets.
func BenchmarkForwardUDP(b *testing.B) {
	for _, size := range []int{148, 1420} {
		b.Run(fmt.Sprintf("wireguard-%d", size), func(b *testing.B) {
			coord, pa, pb := newKey(b), newKey(b), newKey(b)
			auth := newFakeAuth()
			auth.add(pa.Public(), pb.Public())
			auth.peer(pa.Public(), pb.Public())
			s := New(Options{Key: coord, Auth: auth, Rate: 1e12, Burst: 1 << 40})
			delivered := 0
			sink := func([]byte, netip.AddrPort) error { delivered++; return nil }
			fromA, fromB := netip.MustParseAddrPort("127.0.0.1:1001"), netip.MustParseAddrPort("127.0.0.1:1002")
			bindDirect(b, s, coord.Public(), pa, fromA, sink)
			bindDirect(b, s, coord.Public(), pb, fromB, sink)
			delivered = 0
			frame := wire.AppendRelayData(nil, pb.Public(), wgPacket(size, 1))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				s.HandlePacket(frame, fromA, sink)
			}
			if delivered != b.N {
				b.Fatalf("%d of %d packets delivered", delivered, b.N)
			}
		})
	}
}
