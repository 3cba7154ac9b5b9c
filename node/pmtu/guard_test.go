package pmtu

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/packet/packettest"
	"github.com/meshnode/meshnode/tun/tuntest"
)

// offset is wireguard-go's: the room it keeps before each packet.
const offset = 16

var (
	self4   = netip.MustParseAddr("100.88.0.1")
	small4  = netip.MustParseAddr("100.88.0.2") // a peer behind a 1400-byte link
	full4   = netip.MustParseAddr("100.88.0.3") // a peer whose path carries 1420
	self6   = netip.MustParseAddr("fd6d:6573:686e::1")
	small6  = netip.MustParseAddr("fd6d:6573:686e::2")
	smallPK = crypto.PublicKey{2}
	fullPK  = crypto.PublicKey{3}
)

// newTable has a peer at 1328 (a 1400-byte IPv4 path) and one at 1420.
func newTable() *Table {
	t := NewTable(1420)
	t.SetPeer(smallPK, []netip.Addr{small4, small6})
	t.SetPeer(fullPK, []netip.Addr{full4})
	t.SetMTU(smallPK, 1328)
	t.SetMTU(fullPK, 1420)
	return t
}

func bufs(n int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, offset+9000)
	}
	return b, make([]int, n)
}

func TestGuardRead(t *testing.T) {
	df := uint8(header.IPv4FlagDontFragment)
	syn := header.TCPFlagSyn
	for _, tc := range []struct {
		name    string
		pkt     []byte
		dropped bool
		mss     int // MSS after, for SYNs
		errMTU  int // MTU in the ICMP error written back, 0: none
	}{
		{"SYN to the small peer: clamped", packettest.TCP(packettest.IP{Src: self4, Dst: small4, Flags: df}, syn, packettest.MSSOption(1380), 0), false, 1288, 0},
		{"IPv6 SYN to the small peer: clamped", packettest.TCP(packettest.IP{Src: self6, Dst: small6}, syn, packettest.MSSOption(1360), 0), false, 1268, 0},
		{"SYN to the full peer: untouched", packettest.TCP(packettest.IP{Src: self4, Dst: full4, Flags: df}, syn, packettest.MSSOption(1380), 0), false, 1380, 0},
		{"full-size DF packet to the small peer: refused", packettest.TCP(packettest.IP{Src: self4, Dst: small4, Flags: df}, header.TCPFlagAck, nil, 1380), true, 0, 1328},
		{"full-size IPv6 packet to the small peer: refused", packettest.TCP(packettest.IP{Src: self6, Dst: small6}, header.TCPFlagAck, nil, 1360), true, 0, 1328},
		{"full-size packet without DF: forwarded", packettest.TCP(packettest.IP{Src: self4, Dst: small4}, header.TCPFlagAck, nil, 1380), false, 0, 0},
		{"full-size packet to the full peer: untouched", packettest.TCP(packettest.IP{Src: self4, Dst: full4, Flags: df}, header.TCPFlagAck, nil, 1380), false, 0, 0},
		{"packet that fits the small peer: untouched", packettest.TCP(packettest.IP{Src: self4, Dst: small4, Flags: df}, header.TCPFlagAck, nil, 1288), false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &tuntest.Batch{Packets: [][]byte{tc.pkt}}
			g := NewGuard(dev, newTable())
			b, sizes := bufs(1)
			n, err := g.Read(b, sizes, offset)
			if err != nil || n != 1 {
				t.Fatalf("Read = %d, %v", n, err)
			}
			if got := sizes[0] == 0; got != tc.dropped {
				t.Fatalf("dropped = %v, want %v", got, tc.dropped)
			}
			out := b[0][offset : offset+sizes[0]]
			if tc.mss != 0 {
				if got := packettest.MSS(out); got != tc.mss {
					t.Errorf("MSS %d, want %d", got, tc.mss)
				}
				if !packettest.TCPChecksumValid(out) {
					t.Error("TCP checksum invalid")
				}
			} else if !tc.dropped && !bytes.Equal(out, tc.pkt) {
				t.Error("packet changed")
			}
			if tc.errMTU == 0 {
				if len(dev.Written) != 0 {
					t.Fatalf("%d errors written, want none", len(dev.Written))
				}
				return
			}
			if len(dev.Written) != 1 {
				t.Fatalf("%d errors written, want 1", len(dev.Written))
			}
			checkError(t, dev.Written[0], tc.pkt, tc.errMTU)
		})
	}
}

// checkError checks an ICMP error written into the TUN: it goes back to
// the sender and names the MTU.
func checkError(t *testing.T, msg, orig []byte, mtu int) {
	t.Helper()
	if msg[0]>>4 == 4 {
		if !bytes.Equal(msg[16:20], orig[12:16]) || !bytes.Equal(msg[12:16], orig[16:20]) {
			t.Error("error not sent from the destination back to the source")
		}
		m, err := icmp.ParseMessage(1, msg[20:])
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Body.(*icmp.DstUnreach); !ok || m.Code != 4 || int(header.ICMPv4(msg[20:]).MTU()) != mtu {
			t.Errorf("ICMP %v code %d MTU %d, want fragmentation needed, MTU %d", m.Type, m.Code, header.ICMPv4(msg[20:]).MTU(), mtu)
		}
		return
	}
	if !bytes.Equal(msg[24:40], orig[8:24]) {
		t.Error("error not sent back to the source")
	}
	m, err := icmp.ParseMessage(58, msg[40:])
	if err != nil {
		t.Fatal(err)
	}
	if ptb, ok := m.Body.(*icmp.PacketTooBig); !ok || ptb.MTU != mtu {
		t.Errorf("ICMPv6 %v, want packet too big with MTU %d", m.Body, mtu)
	}
}

func TestGuardWriteClampsSYNsFromSmallPeers(t *testing.T) {
	syn := header.TCPFlagSyn | header.TCPFlagAck
	fromSmall := packettest.TCP(packettest.IP{Src: small4, Dst: self4}, syn, packettest.MSSOption(1380), 0)
	fromFull := packettest.TCP(packettest.IP{Src: full4, Dst: self4}, syn, packettest.MSSOption(1380), 0)
	dev := &tuntest.Batch{}
	g := NewGuard(dev, newTable())
	b := [][]byte{append(make([]byte, offset), fromSmall...), append(make([]byte, offset), fromFull...)}
	if _, err := g.Write(b, offset); err != nil {
		t.Fatal(err)
	}
	if got := packettest.MSS(dev.Written[0]); got != 1288 || !packettest.TCPChecksumValid(dev.Written[0]) {
		t.Errorf("SYN-ACK from the small peer: MSS %d (checksum ok %v), want 1288", got, packettest.TCPChecksumValid(dev.Written[0]))
	}
	if got := packettest.MSS(dev.Written[1]); got != 1380 {
		t.Errorf("SYN-ACK from the full peer: MSS %d, want 1380 untouched", got)
	}
	if g.Stats.Clamped.Load() != 1 {
		t.Errorf("clamped %d, want 1", g.Stats.Clamped.Load())
	}
}

func TestTableTracksReducedPeers(t *testing.T) {
	tb := NewTable(1420)
	tb.SetPeer(smallPK, []netip.Addr{small4})
	steps := []struct {
		name   string
		do     func()
		active bool
		limit  int
	}{
		{"unknown MTU", func() {}, false, 0},
		{"path at the TUN MTU", func() { tb.SetMTU(smallPK, 1420) }, false, 0},
		{"path smaller", func() { tb.SetMTU(smallPK, 1328) }, true, 1328},
		{"smaller again", func() { tb.SetMTU(smallPK, 1216) }, true, 1216},
		{"no direct path", func() { tb.SetMTU(smallPK, 0) }, false, 0},
		{"smaller, then the peer goes", func() { tb.SetMTU(smallPK, 1328); tb.RemovePeer(smallPK) }, false, 0},
		{"an MTU for a removed peer", func() { tb.SetMTU(smallPK, 1328) }, false, 0},
	}
	for _, s := range steps {
		s.do()
		if tb.active() != s.active || tb.limit(small4) != s.limit {
			t.Errorf("%s: active %v limit %d, want %v %d", s.name, tb.active(), tb.limit(small4), s.active, s.limit)
		}
	}
}

// TestGuardDoesNotAllocate: the guard runs on every packet.
func TestGuardDoesNotAllocate(t *testing.T) {
	syn := packettest.TCP(packettest.IP{Src: self4, Dst: small4, Flags: header.IPv4FlagDontFragment}, header.TCPFlagSyn, packettest.MSSOption(1380), 0)
	big := packettest.TCP(packettest.IP{Src: self4, Dst: small4, Flags: header.IPv4FlagDontFragment}, header.TCPFlagAck, nil, 1380)
	data := packettest.TCP(packettest.IP{Src: self4, Dst: full4, Flags: header.IPv4FlagDontFragment}, header.TCPFlagAck, nil, 1380)
	g := NewGuard(&tuntest.Batch{Packets: [][]byte{syn, big, data}}, newTable())
	b, sizes := bufs(3)
	if a := testing.AllocsPerRun(100, func() { g.Read(b, sizes, offset) }); a != 0 {
		t.Errorf("Read allocates %.1f times a batch", a)
	}
	g = NewGuard(&tuntest.Discard{}, newTable())
	wb := [][]byte{append(make([]byte, offset), syn...)}
	if a := testing.AllocsPerRun(100, func() { g.Write(wb, offset) }); a != 0 {
		t.Errorf("Write allocates %.1f times a batch", a)
	}
}

// presetTUN returns the same batch, already in the caller's buffers, on
// every Read: a benchmark then times the guard, not copying packets.
type presetTUN struct {
	tuntest.Batch
	n, size int
}

func (p *presetTUN) Read(_ [][]byte, sizes []int, _ int) (int, error) {
	for i := range p.n {
		sizes[i] = p.size
	}
	return p.n, nil
}

// BenchmarkGuardRead is the guard's cost on a batch of 64 full-size packets
// to one peer: when no path is smaller (the common case), and when another
// peer's is, so that every packet's destination is looked up.
func BenchmarkGuardRead(b *testing.B) {
	pkt := packettest.TCP(packettest.IP{Src: self4, Dst: full4, Flags: header.IPv4FlagDontFragment}, header.TCPFlagAck, nil, 1380)
	const n = 64
	for _, bc := range []struct {
		name  string
		table *Table
	}{
		{"all-paths-full", NewTable(1420)},
		{"one-path-smaller", newTable()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := NewGuard(&presetTUN{n: n, size: len(pkt)}, bc.table)
			bufs, sizes := bufs(n)
			for _, buf := range bufs {
				copy(buf[offset:], pkt)
			}
			for b.Loop() {
				g.Read(bufs, sizes, offset)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
		})
	}
}
