package relay

import (
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// coreRound is how many frames a node queues at the relay before the relay
// drains them: within the relay socket's buffer (about 2.3 KiB of kernel
// memory per datagram on loopback), whatever the host allows.
const coreRound = 1024

// BenchmarkRelayCore measures what one reader, so one core, forwards:
// node a queues coreRound frames to b at the relay's socket (untimed), and
// the relay drains them through real loopback sockets (timed: its reads,
// its work, its sends, and the kernel's delivery to b's socket). The
// figure is the relay's cost alone, without a sender or a receiver sharing
// the core; cpu-ns/frame and Mbit/s/core count the CPU time the process
// spent (the reader is all that runs then), so other work on the machine
// doesn't lower them as it lowers the wall-clock figures. The frames are
// full-size packets fitted to the relay (pmtu.RelayMTU). "one-at-a-time"
// reads and sends a datagram a call, as the relay did before batching;
// "batched" uses recvmmsg and sendmmsg; "trains" too, with a sending as a
// node's StdNetBind does (trains of 64, UDP_SEGMENT), the relay reading
// trains whole (UDP_GRO) and sending them on as trains, and b reading them
// whole.
func BenchmarkRelayCore(b *testing.B) {
	const size = 1376 + 32 // a WireGuard packet fitted to the relay
	for _, mode := range []string{"one-at-a-time", "batched", "trains"} {
		b.Run(mode, func(b *testing.B) {
			s, coord, pa, pb := benchRelay(b)
			relayConn := listenLoopback(b)
			var conn batchConn
			switch mode {
			case "one-at-a-time":
				conn = singleConn{relayConn}
			case "batched":
				conn = &kernelConn{x: ipv4.NewPacketConn(relayConn.(*net.UDPConn))}
			default:
				conn = newBatchConn(relayConn)
			}
			sock := &udpSock{port: &udpPort{}, conn: conn}
			na, nb := listenLoopback(b).(*net.UDPConn), listenLoopback(b).(*net.UDPConn)
			if mode == "trains" {
				offloads(nb) // b reads trains, as StdNetBind does
			}
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
				send(b, mode == "trains", na, to, frame, k)
				relayConn.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // a lost frame fails the read below
				b.StartTimer()
				start := cpuTime(b)
				for got := 0; got < k; {
					n, err := conn.readBatch(r.in)
					if err != nil {
						b.Fatalf("relay read after %d of %d frames: %v", got, k, err)
					}
					r.serve(r.in[:n])
					for i := range n {
						got += datagrams(conn, &r.in[i])
					}
				}
				cpu += cpuTime(b) - start
				b.StopTimer()
				drain(b, nb, k*len(frame))
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

// drain reads the bytes the relay forwarded to c, in datagrams or trains.
func drain(b *testing.B, c *net.UDPConn, bytes int) {
	buf := make([]byte, maxDatagram)
	c.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // a lost frame fails the read
	for got := 0; got < bytes; {
		n, err := c.Read(buf)
		if err != nil {
			b.Fatalf("%d of %d bytes forwarded: %v", got, bytes, err)
		}
		got += n
	}
}

// send sends k copies of frame from c to to: in trains as long as a train
// may be, or a datagram a call.
func send(b *testing.B, trains bool, c *net.UDPConn, to *net.UDPAddr, frame []byte, k int) {
	if !trains {
		for range k {
			if _, err := c.WriteToUDP(frame, to); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	oob := putSegment(make([]byte, oobSize), len(frame))
	pc := ipv4.NewPacketConn(c)
	per := min(maxSegments, maxTrainBytes/len(frame))
	for sent := 0; sent < k; sent += per {
		train := slices.Repeat([][]byte{frame}, min(per, k-sent))
		if _, err := pc.WriteBatch([]message{{Buffers: train, OOB: oob, Addr: to}}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// datagrams is how many datagrams m, read on conn, holds.
func datagrams(conn batchConn, m *message) int {
	size := conn.segmentSize(m)
	if size <= 0 {
		return 1
	}
	return (m.N + size - 1) / size
}
