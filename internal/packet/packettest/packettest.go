// Package packettest builds and checks IP packets for tests with gVisor's
// header package: an implementation independent of package packet.
package packettest

import (
	"encoding/binary"
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
	return tcp(ip, Ports{Src: 40000, Dst: 443}, flags, opts, data)
}

// Ports are a TCP or UDP segment's source and destination ports.
type Ports struct{ Src, Dst uint16 }

// TCPFlow builds a TCP segment between ports with flags and no options or
// data, checksummed.
func TCPFlow(ip IP, p Ports, flags header.TCPFlags) []byte {
	return tcp(ip, p, flags, nil, 0)
}

func tcp(ip IP, p Ports, flags header.TCPFlags, opts []byte, data int) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0) // end of options, then padding
	}
	seg := make([]byte, header.TCPMinimumSize+len(opts)+data)
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: p.Src, DstPort: p.Dst, SeqNum: 7, DataOffset: uint8(header.TCPMinimumSize + len(opts)), Flags: flags, WindowSize: 65535})
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

// UDP builds a UDP datagram between ports with data bytes, checksummed.
func UDP(ip IP, p Ports, data int) []byte {
	seg := make([]byte, header.UDPMinimumSize+data)
	u := header.UDP(seg)
	u.Encode(&header.UDPFields{SrcPort: p.Src, DstPort: p.Dst, Length: uint16(len(seg))})
	ip.Proto = uint8(header.UDPProtocolNumber)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, Addr(ip.Src), Addr(ip.Dst), uint16(len(seg)))
	u.SetChecksum(^checksum.Checksum(seg, xsum))
	return ip.Build(seg)
}

// Echo builds an ICMP (IPv4) or ICMPv6 echo request, or reply, with
// identifier id.
func Echo(ip IP, reply bool, id uint16) []byte {
	if ip.Src.Is4() {
		typ := header.ICMPv4Echo
		if reply {
			typ = header.ICMPv4EchoReply
		}
		return ICMP(ip, uint8(typ), 0, binary.BigEndian.AppendUint16(nil, id), nil)
	}
	typ := header.ICMPv6EchoRequest
	if reply {
		typ = header.ICMPv6EchoReply
	}
	return ICMP(ip, uint8(typ), 0, binary.BigEndian.AppendUint16(nil, id), nil)
}

// ICMP builds an ICMP (IPv4) or ICMPv6 message: type, code, the 4 bytes
// after the checksum (rest, zero-padded) and a body (an error's quote),
// checksummed.
func ICMP(ip IP, typ, code uint8, rest, body []byte) []byte {
	msg := make([]byte, 8, 8+len(body))
	msg[0], msg[1] = typ, code
	copy(msg[4:8], rest)
	msg = append(msg, body...)
	if ip.Src.Is4() {
		ip.Proto = uint8(header.ICMPv4ProtocolNumber)
		header.ICMPv4(msg).SetChecksum(^checksum.Checksum(msg, 0))
		return ip.Build(msg)
	}
	ip.Proto = uint8(header.ICMPv6ProtocolNumber)
	m := header.ICMPv6(msg)
	m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: m[:header.ICMPv6MinimumSize], Src: Addr(ip.Src), Dst: Addr(ip.Dst),
		PayloadCsum: checksum.Checksum(m[header.ICMPv6MinimumSize:], 0), PayloadLen: len(m) - header.ICMPv6MinimumSize,
	}))
	return ip.Build(msg)
}
