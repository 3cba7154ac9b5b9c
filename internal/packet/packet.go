// Package packet reads and rewrites overlay IP packets in place, as a router
// does for a next hop with a smaller MTU: it clamps the MSS of TCP SYNs and
// builds the ICMP "fragmentation needed" (RFC 792, RFC 1191) and ICMPv6
// "packet too big" (RFC 4443 §3.2, RFC 8201) errors that tell a sender to
// send smaller packets; and it reads the headers a stateful packet filter
// decides on (Parse). Nothing here allocates except into a caller's buffer:
// it runs on the TUN's packet path.
package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header sizes and protocol numbers.
const (
	IPv4HeaderLen = 20 // RFC 791, without options
	IPv6HeaderLen = 40 // RFC 8200 §3
	tcpHeaderLen  = 20 // RFC 9293 §3.1, without options
	icmpHeaderLen = 8  // type, code, checksum, 4 bytes of rest (RFC 792, RFC 4443 §2.1)

	protoICMP   = 1
	protoTCP    = 6
	protoICMPv6 = 58

	// IPv6MinMTU is the least MTU every IPv6 link carries (RFC 8200 §5): no
	// "packet too big" may ask for less, and IPv6 packets within it must get
	// through.
	IPv6MinMTU = 1280
	// ipv4ErrorMax bounds an ICMPv4 error: the original datagram is quoted
	// up to 576 bytes in all (RFC 1812 §4.3.2.3).
	ipv4ErrorMax = 576
)

// ICMP types and codes used here.
const (
	icmpDestUnreachable = 3 // RFC 792
	icmpFragNeeded      = 4 // code: fragmentation needed and DF set
	icmpTimeExceeded    = 11
	icmpParamProblem    = 12
	icmpv6PacketTooBig  = 2 // RFC 4443 §3.2
	// icmpv6InfoMin: ICMPv6 types below it are errors (RFC 4443 §2.1).
	icmpv6InfoMin = 128
	// errorTTL is the hop limit of the errors built here (RFC 1700's
	// default TTL, Linux's too).
	errorTTL = 64
	// tosInternetControl is the precedence routers give ICMP errors
	// (RFC 1812 §4.3.2.5).
	tosInternetControl = 0xc0
)

// Dst is the packet's destination address; false for what is not IPv4 or
// IPv6.
func Dst(pkt []byte) (netip.Addr, bool) {
	switch version(pkt) {
	case 4:
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}

// Src is the packet's source address; false for what is not IPv4 or IPv6.
func Src(pkt []byte) (netip.Addr, bool) {
	switch version(pkt) {
	case 4:
		return netip.AddrFrom4([4]byte(pkt[12:16])), true
	case 6:
		return netip.AddrFrom16([16]byte(pkt[8:24])), true
	}
	return netip.Addr{}, false
}

// version is 4 or 6 for a packet long enough to hold that header, else 0.
func version(pkt []byte) int {
	switch {
	case len(pkt) >= IPv4HeaderLen && pkt[0]>>4 == 4:
		return 4
	case len(pkt) >= IPv6HeaderLen && pkt[0]>>4 == 6:
		return 6
	}
	return 0
}

// ipv4Header returns the header length of a well-formed IPv4 packet, or 0:
// the header fits the packet, and the total length covers the header and
// fits the packet too (a total length shorter than the header is hostile
// or broken, never sent by a sane stack).
func ipv4Header(pkt []byte) int {
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < IPv4HeaderLen || ihl > len(pkt) || total < ihl || total > len(pkt) {
		return 0
	}
	return ihl
}

// ipv4 flags and fragment offset (RFC 791 §3.1).
const (
	flagDF     = 0x4000
	flagMF     = 0x2000
	offsetMask = 0x1fff
)

// tcp returns the TCP segment of an unfragmented packet, or nil.
func tcp(pkt []byte) []byte {
	switch version(pkt) {
	case 4:
		ihl := ipv4Header(pkt)
		frag := binary.BigEndian.Uint16(pkt[6:8])
		if ihl == 0 || pkt[9] != protoTCP || frag&(flagMF|offsetMask) != 0 {
			return nil
		}
		return pkt[ihl:binary.BigEndian.Uint16(pkt[2:4])]
	case 6:
		// A SYN with extension headers before TCP is left alone: rare, and
		// walking them is not worth it on this path.
		end := IPv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
		if pkt[6] != protoTCP || end > len(pkt) {
			return nil
		}
		return pkt[IPv6HeaderLen:end]
	}
	return nil
}

// MSS is the largest TCP segment an IP packet of mtu bytes carries for pkt's
// IP version: mtu less the IP and TCP headers (RFC 9293 §3.7.1).
func MSS(pkt []byte, mtu int) int {
	if version(pkt) == 6 {
		return mtu - IPv6HeaderLen - tcpHeaderLen
	}
	return mtu - IPv4HeaderLen - tcpHeaderLen
}

// TCP option kinds (RFC 9293 §3.2).
const (
	optEnd = 0
	optNOP = 1
	optMSS = 2
	synBit = 0x02
)

// SYN reports whether pkt is an unfragmented TCP SYN (or SYN-ACK): the
// only packets ClampMSS changes.
func SYN(pkt []byte) bool {
	seg := tcp(pkt)
	return len(seg) >= tcpHeaderLen && seg[13]&synBit != 0
}

// ClampMSS lowers the MSS option of a TCP SYN (or SYN-ACK) to mss, fixing
// the checksum, and reports whether it changed the packet. Anything else
// (not a SYN, no MSS option, MSS already small, a malformed header) is left
// as it is. A SYN without the option announces 536 or 1220 bytes, which any
// path carries.
func ClampMSS(pkt []byte, mss int) bool {
	if !SYN(pkt) || mss <= 0 {
		return false
	}
	seg := tcp(pkt)
	doff := int(seg[12]>>4) * 4
	if doff < tcpHeaderLen || doff > len(seg) {
		return false
	}
	for i := tcpHeaderLen; i < doff; {
		switch seg[i] {
		case optEnd:
			return false
		case optNOP:
			i++
			continue
		}
		if i+1 >= doff {
			return false
		}
		n := int(seg[i+1])
		if n < 2 || i+n > doff {
			return false
		}
		if seg[i] == optMSS && n == 4 {
			old := binary.BigEndian.Uint16(seg[i+2:])
			if int(old) <= mss {
				return false
			}
			binary.BigEndian.PutUint16(seg[i+2:], uint16(mss))
			sum := binary.BigEndian.Uint16(seg[16:18])
			binary.BigEndian.PutUint16(seg[16:18], updateChecksum(sum, old, uint16(mss), (i+2)%2 == 1))
			return true
		}
		i += n
	}
	return false
}

// updateChecksum adjusts an Internet checksum for one 16-bit value changed
// from old to new (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')). A value at an
// odd offset straddles two 16-bit words, where it adds in byte-swapped.
func updateChecksum(sum, old, new uint16, odd bool) uint16 {
	if odd {
		old, new = old<<8|old>>8, new<<8|new>>8
	}
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

// sum16 adds b to a one's-complement sum as 16-bit big-endian words (RFC
// 1071); an odd last byte is padded with zero.
func sum16(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold completes a one's-complement sum into a checksum.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
