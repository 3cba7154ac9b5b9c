package relay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// countConn counts the datagrams the relay sends through it.
type countConn struct{ n int }

func (c *countConn) readBatch([]message) (int, error) { panic("countConn is written only") }
func (*countConn) readSlots() int                     { return batchSize }
func (*countConn) oobLen() int                        { return 0 }
func (*countConn) segmentSize(*message) int           { return 0 }

func (c *countConn) writeBatch(ds []datagram, _ *packer, failed []int) []int {
	c.n += len(ds)
	return failed
}

// benchRelay is a relay without a rate limit, with two peers a and b.
func benchRelay(b testing.TB) (s *Server, coord, pa, pb crypto.PrivateKey) {
	coord, pa, pb = newKey(b), newKey(b), newKey(b)
	auth := newFakeAuth()
	auth.add(pa.Public(), pb.Public())
	auth.peer(pa.Public(), pb.Public())
	return New(Options{Key: coord, Auth: auth, Rate: 1e12, Burst: 1 << 40}), coord, pa, pb
}

// bindVia binds priv at from through sock, reading the relay's answers
// with recv.
func bindVia(b testing.TB, s *Server, sock *udpSock, coord crypto.PublicKey, priv crypto.PrivateKey, from netip.AddrPort, recv func() []byte) {
	b.Helper()
	deliver(s, sock, wire.RelayFrame{Type: wire.RelayHello, Key: priv.Public()}.Marshal(), from)
	f, err := wire.ParseRelay(recv())
	if err != nil || f.Type != wire.RelayChallenge {
		b.Fatalf("hello: got %v %v, want a challenge", f.Type, err)
	}
	proof, err := crypto.Proof(priv, coord, wire.RelayProofLabel, f.Challenge)
	if err != nil {
		b.Fatal(err)
	}
	deliver(s, sock, wire.RelayFrame{Type: wire.RelayAuth, Key: priv.Public(), Challenge: f.Challenge, Proof: proof}.Marshal(), from)
	if f, err := wire.ParseRelay(recv()); err != nil || f.Type != wire.RelayOK {
		b.Fatalf("auth: got %v %v, want OK", f.Type, err)
	}
}

// BenchmarkForwardUDP measures the relay's own work per frame between two
// UDP nodes, without the sockets: in batches of one (one datagram per
// read, as before batching) and of batchSize, where the table lookups,
// the peer check and the counters are paid once a batch.
func BenchmarkForwardUDP(b *testing.B) {
	for _, size := range []int{148, 1420} {
		for _, batch := range []int{1, batchSize} {
			b.Run(fmt.Sprintf("wireguard-%d/batch-%d", size, batch), func(b *testing.B) {
				s, coord, pa, pb := benchRelay(b)
				fc := &fakeConn{}
				sock := &udpSock{port: &udpPort{}, conn: fc}
				fromA, fromB := netip.MustParseAddrPort("127.0.0.1:1001"), netip.MustParseAddrPort("127.0.0.1:1002")
				recv := func() []byte {
					out := fc.sent[len(fc.sent)-1]
					fc.sent = fc.sent[:0]
					return out
				}
				bindVia(b, s, sock, coord.Public(), pa, fromA, recv)
				bindVia(b, s, sock, coord.Public(), pb, fromB, recv)
				cc := &countConn{}
				sock.conn = cc
				r := &reader{s: s, sock: sock, out: newSink(sock, batch)}
				dst := pb.Public()
				ms := make([]message, batch)
				for i := range ms {
					frame := wire.AppendRelayData(nil, dst, wgPacket(size, 1))
					ms[i] = message{Buffers: [][]byte{frame}, N: len(frame), Addr: net.UDPAddrFromAddrPort(fromA)}
				}
				b.SetBytes(int64(size * batch))
				b.ReportAllocs()
				for b.Loop() {
					for i := range ms {
						// Forwarding rewrote the key; a read would
						// bring the next frame.
						wire.SetRelayKey(ms[i].Buffers[0], dst)
					}
					r.serve(ms)
				}
				if cc.n != b.N*batch {
					b.Fatalf("%d of %d frames forwarded", cc.n, b.N*batch)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
			})
		}
	}
}
