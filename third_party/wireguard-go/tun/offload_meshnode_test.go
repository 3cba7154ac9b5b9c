package tun

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// meshnode's test of its GRO change (third_party/README.md): coalescing
// extends a packet over its buffer's spare capacity without clearing it
// first, so whatever the capacity held must be overwritten by the
// coalesced payloads, byte for byte.
func TestGROCoalescesPayloadsOverStaleCapacity(t *testing.T) {
	src, dst := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	for _, tc := range []struct {
		name  string
		udp   bool
		order []int // the segments' order of arrival (segment i carries payload i)
	}{
		{"TCP in order: appended", false, []int{0, 1, 2}},
		{"TCP out of order: prepended", false, []int{1, 0}},
		{"UDP", true, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 100
			payload := func(i int) []byte { return bytes.Repeat([]byte{byte(0x10 + i)}, size) }
			bufs := make([][]byte, len(tc.order))
			for j, i := range tc.order {
				if tc.udp {
					bufs[j] = meshUDP4(src, dst, payload(i))
				} else {
					bufs[j] = meshTCP4(src, dst, uint32(1+i*size), payload(i))
				}
			}
			var toWrite []int
			if err := handleGRO(bufs, virtioNetHdrLen, newTCPGROTable(), newUDPGROTable(), true, &toWrite); err != nil {
				t.Fatal(err)
			}
			if len(toWrite) != 1 {
				t.Fatalf("%d packets to write, want the segments coalesced into 1", len(toWrite))
			}
			hdr := 40
			if tc.udp {
				hdr = 28
			}
			got := bufs[toWrite[0]][virtioNetHdrLen+hdr:]
			var want []byte
			for i := range tc.order {
				want = append(want, payload(i)...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("coalesced payload (%d bytes) is not the segments' in sequence (%d bytes): %x…", len(got), len(want), got[:min(len(got), 16)])
			}
		})
	}
}

// staleCapacity is a packet buffer whose spare capacity holds garbage, as
// a pooled buffer's does.
func staleCapacity(n int) []byte {
	b := bytes.Repeat([]byte{0xee}, 65535)
	return b[:n]
}

func meshTCP4(src, dst netip.AddrPort, seq uint32, payload []byte) []byte {
	b := staleCapacity(virtioNetHdrLen + 40 + len(payload))
	clear(b)
	ip := header.IPv4(b[virtioNetHdrLen:])
	s, d := src.Addr().As4(), dst.Addr().As4()
	ip.Encode(&header.IPv4Fields{SrcAddr: tcpip.AddrFromSlice(s[:]), DstAddr: tcpip.AddrFromSlice(d[:]), Protocol: unix.IPPROTO_TCP, TTL: 64, TotalLength: uint16(40 + len(payload))})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[virtioNetHdrLen+20:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: 1, DataOffset: 20, Flags: header.TCPFlagAck, WindowSize: 3000})
	copy(b[virtioNetHdrLen+40:], payload)
	sum := header.PseudoHeaderChecksum(unix.IPPROTO_TCP, ip.SourceAddress(), ip.DestinationAddress(), uint16(20+len(payload)))
	tcp.SetChecksum(^tcp.CalculateChecksum(checksum(payload, uint64(sum))))
	return b
}

func meshUDP4(src, dst netip.AddrPort, payload []byte) []byte {
	b := staleCapacity(virtioNetHdrLen + 28 + len(payload))
	clear(b)
	ip := header.IPv4(b[virtioNetHdrLen:])
	s, d := src.Addr().As4(), dst.Addr().As4()
	ip.Encode(&header.IPv4Fields{SrcAddr: tcpip.AddrFromSlice(s[:]), DstAddr: tcpip.AddrFromSlice(d[:]), Protocol: unix.IPPROTO_UDP, TTL: 64, TotalLength: uint16(28 + len(payload))})
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(b[virtioNetHdrLen+20:])
	udp.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(8 + len(payload))})
	copy(b[virtioNetHdrLen+28:], payload)
	sum := header.PseudoHeaderChecksum(unix.IPPROTO_UDP, ip.SourceAddress(), ip.DestinationAddress(), uint16(8+len(payload)))
	udp.SetChecksum(^udp.CalculateChecksum(checksum(payload, uint64(sum))))
	return b
}
