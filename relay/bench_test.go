package relay

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// countConn counts the datagrams the relay sends through it.
type countConn struct{ n int }

func (c *countConn) readBatch([]message) (int, error) { panic("countConn is written only") }

func (c *countConn) writeBatch(ms []message, failed []int) []int {
	c.n += len(ms)
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

// coreRound is how many frames a node queues at the relay before the relay
// drains them: within the relay socket's buffer (about 2.3 KiB of kernel
// memory per datagram on loopback), whatever the host allows.
const coreRound = 1024

// BenchmarkRelayCore measures what one reader, so one core, forwards:
// node a queues coreRound full-size frames to b at the relay's socket
// (untimed), and the relay drains them through real loopback sockets
// (timed: its reads, its work, its sends, and the kernel's delivery to b's
// socket). The figure is the relay's cost alone, without a sender or a
// receiver sharing the core; cpu-ns/frame and Mbit/s/core count the CPU
// time the process spent (the reader is all that runs then), so other
// work on the machine doesn't lower them as it lowers the wall-clock
// figures. "one-at-a-time" reads and sends one datagram a call, as the
// relay did before batching; "batched" uses recvmmsg and sendmmsg.
func BenchmarkRelayCore(b *testing.B) {
	const size = 1420 + 32 // a full-size WireGuard packet at MTU 1420
	for _, mode := range []string{"one-at-a-time", "batched"} {
		b.Run(mode, func(b *testing.B) {
			s, coord, pa, pb := benchRelay(b)
			relayConn := listenLoopback(b)
			conn := newBatchConn(relayConn)
			if mode == "one-at-a-time" {
				conn = singleConn{relayConn}
			}
			sock := &udpSock{port: &udpPort{}, conn: conn}
			na, nb := listenLoopback(b).(*net.UDPConn), listenLoopback(b).(*net.UDPConn)
			for _, n := range []struct {
				priv crypto.PrivateKey
				c    *net.UDPConn
			}{{pa, na}, {pb, nb}} {
				bindVia(b, s, sock, coord.Public(), n.priv, n.c.LocalAddr().(*net.UDPAddr).AddrPort(), func() []byte { return readOne(b, n.c) })
			}
			to := relayConn.LocalAddr().(*net.UDPAddr)
			frame := wire.AppendRelayData(nil, pb.Public(), wgPacket(size, 1))
			r := s.newReader(sock, nil)
			b.SetBytes(size)
			var cpu time.Duration
			for done := 0; done < b.N; done += coreRound {
				k := min(coreRound, b.N-done)
				b.StopTimer()
				for range k {
					if _, err := na.WriteToUDP(frame, to); err != nil {
						b.Fatal(err)
					}
				}
				relayConn.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // a lost frame fails the read below
				b.StartTimer()
				start := cpuTime(b)
				for got := 0; got < k; {
					n, err := conn.readBatch(r.in)
					if err != nil {
						b.Fatalf("relay read after %d of %d frames: %v", got, k, err)
					}
					r.serve(r.in[:n])
					got += n
				}
				cpu += cpuTime(b) - start
				b.StopTimer()
				drain(b, nb, k)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N)*size*8/b.Elapsed().Seconds()/1e6, "Mbit/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/frame")
			b.ReportMetric(float64(b.N)*size*8/cpu.Seconds()/1e6, "Mbit/s/core")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// listenLoopback opens one socket as the relay opens its own.
func listenLoopback(b *testing.B) net.PacketConn {
	conns, err := ListenUDP("udp4", "127.0.0.1:0", 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conns[0].Close() })
	return conns[0]
}

// readOne reads the next datagram on c.
func readOne(b *testing.B, c *net.UDPConn) []byte {
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // a missing datagram fails the read
	n, err := c.Read(buf)
	if err != nil {
		b.Fatalf("no answer from the relay: %v", err)
	}
	return buf[:n]
}

// drain reads the k frames the relay forwarded to c.
func drain(b *testing.B, c *net.UDPConn, k int) {
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // a lost frame fails the read
	for i := range k {
		if _, err := c.Read(buf); err != nil {
			b.Fatalf("frame %d of %d not forwarded: %v", i+1, k, err)
		}
	}
}
