package packet

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers a packet filter tells apart (IANA "Assigned Internet
// Protocol Numbers").
const (
	ProtoICMP   = protoICMP
	ProtoTCP    = protoTCP
	ProtoUDP    = 17
	ProtoICMPv6 = protoICMPv6
)

// IPv6 extension headers walked to find the upper-layer protocol (RFC 8200
// §4; AH: RFC 4302 §2.2). Any other next header is the upper layer ("no
// next header", 59, included: a protocol without ports).
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DestOpts = 60
	// maxExtHeaders bounds the walk: a legitimate packet carries a few
	// (RFC 8200 §4.1 recommends each at most once, destination options
	// twice); a hostile one gets no longer loop.
	maxExtHeaders = 8
)

// Sizes of the transport headers read here.
const (
	udpHeaderLen = 8
	// quotedLen is what an ICMP error is sure to quote of the transport
	// header: 64 bits (RFC 792), enough for both ports.
	quotedLen = 8
	// icmpEchoID is the offset of an echo message's identifier (RFC 792,
	// RFC 4443 §4.1).
	icmpEchoID = 4
)

// ICMP message types a filter tells apart.
const (
	ICMPv4EchoReply   = 0
	ICMPv4EchoRequest = 8
	ICMPv6EchoRequest = 128
	ICMPv6EchoReply   = 129
)

// Fragment says which piece of a datagram a packet is.
type Fragment uint8

const (
	// Whole: an unfragmented packet.
	Whole Fragment = iota
	// FirstFragment: offset 0 with more to come; it holds the transport
	// header.
	FirstFragment
	// LaterFragment: a fragment past the first: no transport header; it
	// belongs to the datagram with the same addresses, protocol and FragID.
	LaterFragment
)

// Transport is what a filter reads above IP.
type Transport struct {
	Proto uint8 // upper-layer protocol, after any IPv6 extension headers
	// SrcPort and DstPort are TCP's and UDP's ports; 0 for other protocols.
	SrcPort, DstPort uint16
	TCPFlags         uint8 // TCP only; not read from a quoted packet
	// ICMPType and ICMPCode are ICMP's (ICMPv6's for IPv6); ICMPID is an
	// echo request's or reply's identifier.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
}

// Headers are the parts of an IP packet's headers a stateful filter reads.
type Headers struct {
	Src, Dst netip.Addr
	Transport
	Frag   Fragment
	FragID uint32 // identification of a fragment's datagram (16 bits for IPv4)
	// Quoted is, for an ICMP error (HasQuoted), the packet the error is
	// about: its addresses, protocol and ports, from the header it quotes.
	Quoted    Quoted
	HasQuoted bool
}

// Quoted is the header of the packet an ICMP error quotes.
type Quoted struct {
	Src, Dst netip.Addr
	Transport
}

// TCP flags (RFC 9293 §3.1).
const (
	TCPFin = 0x01
	TCPSyn = synBit
	TCPRst = 0x04
	TCPAck = 0x10
)

// Parse reads pkt's headers into h and reports whether they are well
// formed: IPv4 (RFC 791) or IPv6 (RFC 8200, its extension headers walked)
// holding, unless it is a later fragment, a whole TCP, UDP or ICMP header.
// An ICMP error's quoted header fills h.Quoted when it can be read. A first
// fragment too short for its transport header is malformed (RFC 1858 §3.1,
// RFC 7112), and so is an IPv4 TCP fragment at offset 8, which could
// rewrite a first fragment's TCP flags (RFC 1858 §3.2). Parse allocates
// nothing.
func Parse(pkt []byte, h *Headers) bool {
	*h = Headers{}
	l, ok := parseIP(pkt, false)
	if !ok {
		return false
	}
	h.Src, h.Dst, h.Proto, h.Frag, h.FragID = l.src, l.dst, l.proto, l.frag, l.fragID
	if l.frag == LaterFragment {
		return !(l.proto == protoTCP && l.tinyTCP)
	}
	v6 := h.Src.Is6()
	if !parseTransport(l.payload, &h.Transport, v6, false) {
		return false
	}
	if isICMPError(v6, h.Proto, h.ICMPType) {
		var q Quoted
		if parseQuoted(l.payload[icmpHeaderLen:], &q, v6) {
			h.Quoted, h.HasQuoted = q, true
		}
	}
	return true
}

// ipLayer is what parseIP reads.
type ipLayer struct {
	src, dst netip.Addr
	proto    uint8
	frag     Fragment
	fragID   uint32
	// tinyTCP: an IPv4 fragment at offset 8 (RFC 1858 §3.2).
	tinyTCP bool
	payload []byte
}

// parseIP reads the IP header and returns the upper-layer payload. quoted
// relaxes the length: an ICMP error quotes only the start of a packet.
func parseIP(pkt []byte, quoted bool) (ipLayer, bool) {
	var l ipLayer
	switch version(pkt) {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < IPv4HeaderLen || ihl > len(pkt) || total < ihl {
			return l, false
		}
		pkt, ok := trim(pkt, total, quoted)
		if !ok {
			return l, false
		}
		l.src, l.dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
		l.proto, l.fragID = pkt[9], uint32(binary.BigEndian.Uint16(pkt[4:6]))
		frag := binary.BigEndian.Uint16(pkt[6:8])
		switch {
		case frag&offsetMask != 0:
			l.frag, l.tinyTCP = LaterFragment, frag&offsetMask == 1
		case frag&flagMF != 0:
			l.frag = FirstFragment
		}
		l.payload = pkt[ihl:]
		return l, true
	case 6:
		pkt, ok := trim(pkt, IPv6HeaderLen+int(binary.BigEndian.Uint16(pkt[4:6])), quoted)
		if !ok {
			return l, false
		}
		l.src, l.dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
		return l, walkIPv6(pkt, &l)
	}
	return l, false
}

// trim cuts pkt to the length its IP header gives (trailing bytes are not
// the packet's); a packet shorter than that is malformed unless quoted.
func trim(pkt []byte, n int, quoted bool) ([]byte, bool) {
	switch {
	case n <= len(pkt):
		return pkt[:n], true
	case quoted:
		return pkt, true
	}
	return nil, false
}

// walkIPv6 follows the extension headers to the upper layer.
func walkIPv6(pkt []byte, l *ipLayer) bool {
	next, rest := pkt[6], pkt[IPv6HeaderLen:]
	for range maxExtHeaders {
		var n int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6AH:
			if len(rest) < 2 {
				return false
			}
			n = (int(rest[1]) + 1) * 8 // in 8-byte units, less the first
			if next == ipv6AH {
				n = (int(rest[1]) + 2) * 4 // in 4-byte units, less 2
			}
		case ipv6Fragment:
			if len(rest) < 8 || l.frag != Whole {
				return false
			}
			n = 8
			l.fragID = binary.BigEndian.Uint32(rest[4:8])
			switch {
			case binary.BigEndian.Uint16(rest[2:4])>>3 != 0:
				l.frag = LaterFragment
			case rest[3]&1 != 0:
				l.frag = FirstFragment
			}
		default:
			l.proto, l.payload = next, rest
			return true
		}
		if n > len(rest) {
			return false
		}
		next, rest = rest[0], rest[n:]
		if l.frag == LaterFragment {
			// What follows belongs to the fragmented part: no header to
			// walk, and the next header names the upper layer.
			l.proto, l.payload = next, rest
			return true
		}
	}
	return false
}

// parseTransport reads the TCP, UDP or ICMP header at the start of seg;
// other protocols need nothing. quoted reads only the 8 bytes an ICMP error
// is sure to quote.
func parseTransport(seg []byte, t *Transport, v6 bool, quoted bool) bool {
	switch {
	case t.Proto == protoTCP:
		need := tcpHeaderLen
		if quoted {
			need = quotedLen
		}
		if len(seg) < need {
			return false
		}
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4])
		if !quoted {
			if doff := int(seg[12]>>4) * 4; doff < tcpHeaderLen || doff > len(seg) {
				return false
			}
			t.TCPFlags = seg[13]
		}
	case t.Proto == ProtoUDP:
		if len(seg) < udpHeaderLen {
			return false
		}
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4])
	case isICMP(v6, t.Proto):
		if len(seg) < icmpHeaderLen {
			return false
		}
		t.ICMPType, t.ICMPCode = seg[0], seg[1]
		if IsEcho(v6, t.Proto, t.ICMPType) {
			t.ICMPID = binary.BigEndian.Uint16(seg[icmpEchoID:])
		}
	}
	return true
}

// parseQuoted reads the packet an ICMP error quotes: of the error's IP
// version, not a later fragment (no transport header), and not an error
// itself: no error is sent about an error (RFC 1122 §3.2.2, RFC 4443
// §2.4(e)).
func parseQuoted(b []byte, q *Quoted, v6 bool) bool {
	l, ok := parseIP(b, true)
	if !ok || l.src.Is6() != v6 || l.frag == LaterFragment {
		return false
	}
	q.Src, q.Dst, q.Proto = l.src, l.dst, l.proto
	return parseTransport(l.payload, &q.Transport, v6, true) && !isICMPError(v6, q.Proto, q.ICMPType)
}

// isICMP reports whether proto is the ICMP of the packet's IP version.
func isICMP(v6 bool, proto uint8) bool {
	if v6 {
		return proto == protoICMPv6
	}
	return proto == protoICMP
}

// IsEcho reports an echo request or reply of the packet's IP version.
func IsEcho(v6 bool, proto, typ uint8) bool {
	return IsEchoRequest(v6, proto, typ) || IsEchoReply(v6, proto, typ)
}

// IsEchoRequest reports an echo request of the packet's IP version.
func IsEchoRequest(v6 bool, proto, typ uint8) bool {
	if v6 {
		return proto == protoICMPv6 && typ == ICMPv6EchoRequest
	}
	return proto == protoICMP && typ == ICMPv4EchoRequest
}

// IsEchoReply reports an echo reply of the packet's IP version.
func IsEchoReply(v6 bool, proto, typ uint8) bool {
	if v6 {
		return proto == protoICMPv6 && typ == ICMPv6EchoReply
	}
	return proto == protoICMP && typ == ICMPv4EchoReply
}

// IsICMPError reports the ICMP errors that quote the packet they are about
// and that a filter passes for a tracked flow: destination unreachable,
// time exceeded, parameter problem (RFC 792), and for IPv6 packet too big
// too (RFC 4443 §3). Source quench (deprecated, RFC 6633) and redirects
// (a host's business, never the overlay's) are not among them.
func IsICMPError(v6 bool, proto, typ uint8) bool { return isICMPError(v6, proto, typ) }

func isICMPError(v6 bool, proto, typ uint8) bool {
	if !isICMP(v6, proto) {
		return false
	}
	if v6 {
		return typ >= 1 && typ <= 4
	}
	return typ == icmpDestUnreachable || typ == icmpTimeExceeded || typ == icmpParamProblem
}
