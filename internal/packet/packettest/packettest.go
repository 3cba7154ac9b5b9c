// Package packettest builds and checks IP packets for tests with gVisor's
// header package: an implementation independent of package packet.
package packettest

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IP describes an IPv4 or IPv6 header (by Src's family).
type IP struct {
	Src, Dst netip.Addr
	Proto    uint8
	Flags    uint8  // IPv4 flags: header.IPv4FlagDontFragment, header.IPv4FlagMoreFragments
	FragOff  uint16 // IPv4 fragment offset in bytes
}

// Build wraps payload in the header, checksummed.
func (p IP) Build(payload []byte) []byte {
	if p.Src.Is4() {
		b := make([]byte, header.IPv4MinimumSize+len(payload))
		header.IPv4(b).Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)), TTL: 64, Protocol: p.Proto, Flags: p.Flags, FragmentOffset: p.FragOff,
			SrcAddr: Addr(p.Src), DstAddr: Addr(p.Dst),
		})
		header.IPv4(b).SetChecksum(^header.IPv4(b).CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], payload)
		return b
	}
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(payload)), TransportProtocol: tcpip.TransportProtocolNumber(p.Proto), HopLimit: 64,
		SrcAddr: Addr(p.Src), DstAddr: Addr(p.Dst),
	})
	copy(b[header.IPv6MinimumSize:], payload)
	return b
}

// Addr converts an address to gVisor's.
func Addr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// MSSOption is a TCP MSS option (RFC 9293 §3.2).
func MSSOption(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }

// TCP builds a TCP segment with options and data bytes in ip, checksummed.
func TCP(ip IP, flags header.TCPFlags, opts []byte, data int) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0) // end of options, then padding
	}
	seg := make([]byte, header.TCPMinimumSize+len(opts)+data)
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 443, SeqNum: 7, DataOffset: uint8(header.TCPMinimumSize + len(opts)), Flags: flags, WindowSize: 65535})
	copy(seg[header.TCPMinimumSize:], opts)
	ip.Proto = uint8(header.TCPProtocolNumber)
	pkt := ip.Build(seg)
	t := segment(pkt)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, Addr(ip.Src), Addr(ip.Dst), uint16(len(t)))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	return pkt
}

// segment is the TCP segment of a packet TCP built.
func segment(pkt []byte) header.TCP {
	if pkt[0]>>4 == 4 {
		return header.TCP(pkt[header.IPv4MinimumSize:])
	}
	return header.TCP(pkt[header.IPv6MinimumSize:])
}

func addrs(pkt []byte) (src, dst tcpip.Address) {
	if pkt[0]>>4 == 4 {
		h := header.IPv4(pkt)
		return h.SourceAddress(), h.DestinationAddress()
	}
	h := header.IPv6(pkt)
	return h.SourceAddress(), h.DestinationAddress()
}

// TCPChecksumValid checks the checksum of a segment TCP built.
func TCPChecksumValid(pkt []byte) bool {
	t := segment(pkt)
	src, dst := addrs(pkt)
	payload := t[t.DataOffset():]
	return t.IsChecksumValid(src, dst, checksum.Checksum(payload, 0), uint16(len(payload)))
}

// MSS reads the MSS option of a segment TCP built (0: none).
func MSS(pkt []byte) int {
	return int(header.ParseSynOptions(segment(pkt).Options(), false).MSS)
}
