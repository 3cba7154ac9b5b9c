package packet

import (
	"encoding/binary"
	"net/netip"
)

// Verdict is what a router does with a packet too big for its next hop.
type Verdict int

const (
	// Forward: the packet may not be refused, send it as it is (and let
	// the underlay fragment it): IPv4 without DF, which a router fragments
	// (RFC 791 §3.2), and IPv6 within the minimum MTU every link must carry
	// (RFC 8200 §5).
	Forward Verdict = iota
	// Refuse: drop it and deliver the returned ICMP error to its source.
	Refuse
	// Drop: drop it without an error, as RFC 1122 §3.2.2 and RFC 4443
	// §2.4(e) require for errors about errors, non-first fragments and
	// sources that are not a unicast host.
	Drop
)

// String names the verdict for logs and tests.
func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case Refuse:
		return "refuse"
	}
	return "drop"
}

// MaxError is the largest error TooBig builds (an ICMPv6 error fills the
// IPv6 minimum MTU, RFC 4443 §2.4(c)): the buffer a caller keeps for it.
const MaxError = IPv6MinMTU

// TooBig decides the fate of pkt, larger than mtu, the most a next hop
// carries. For Refuse it appends to dst the error a router sends (RFC 1191
// §4 "fragmentation needed" with the next-hop MTU; RFC 4443 §3.2 "packet too
// big", never below 1280), addressed to pkt's source and sent from pkt's
// destination: the only address on the far side of the tunnel the source
// routes back through it, and one its kernel accepts (a local source would
// be a martian).
func TooBig(dst, pkt []byte, mtu int) ([]byte, Verdict) {
	switch version(pkt) {
	case 4:
		return tooBig4(dst, pkt, mtu)
	case 6:
		return tooBig6(dst, pkt, mtu)
	}
	return dst, Drop
}

func tooBig4(dst, pkt []byte, mtu int) ([]byte, Verdict) {
	ihl := ipv4Header(pkt)
	if ihl == 0 {
		return dst, Drop
	}
	frag := binary.BigEndian.Uint16(pkt[6:8])
	switch {
	case frag&flagDF == 0:
		return dst, Forward
	case frag&offsetMask != 0, !unicast4(netip.AddrFrom4([4]byte(pkt[12:16]))),
		pkt[9] == protoICMP && ihl < len(pkt) && icmpError4(pkt[ihl]):
		return dst, Drop
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	quote := pkt[:min(total, ipv4ErrorMax-IPv4HeaderLen-icmpHeaderLen)]
	start := len(dst)
	dst = append(dst,
		0x45, tosInternetControl, 0, 0, // version, IHL, TOS, total length
		0, 0, 0, 0, // identification, flags, fragment offset
		errorTTL, protoICMP, 0, 0) // TTL, protocol, header checksum
	dst = append(dst, pkt[16:20]...) // from the original destination
	dst = append(dst, pkt[12:16]...) // to the original source
	dst = append(dst, icmpDestUnreachable, icmpFragNeeded, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(mtu))
	dst = append(dst, quote...)
	out := dst[start:]
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	binary.BigEndian.PutUint16(out[10:12], fold(sum16(0, out[:IPv4HeaderLen])))
	icmp := out[IPv4HeaderLen:]
	binary.BigEndian.PutUint16(icmp[2:4], fold(sum16(0, icmp)))
	return dst, Refuse
}

// icmpError4 reports ICMPv4 error types, about which no error is sent
// (RFC 1122 §3.2.2): destination unreachable, source quench, redirect, time
// exceeded, parameter problem.
func icmpError4(typ byte) bool {
	switch typ {
	case icmpDestUnreachable, 4, 5, icmpTimeExceeded, icmpParamProblem:
		return true
	}
	return false
}

// unicast4 reports a source an error can be sent to (RFC 1122 §3.2.2).
func unicast4(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func tooBig6(dst, pkt []byte, mtu int) ([]byte, Verdict) {
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	end := IPv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
	switch {
	case end > len(pkt) || src.IsUnspecified() || src.IsMulticast():
		return dst, Drop
	case len(pkt) <= IPv6MinMTU:
		return dst, Forward
	case pkt[6] == protoICMPv6 && len(pkt) > IPv6HeaderLen && pkt[IPv6HeaderLen] < icmpv6InfoMin:
		return dst, Drop
	}
	quote := pkt[:min(end, MaxError-IPv6HeaderLen-icmpHeaderLen)]
	start := len(dst)
	dst = append(dst, 0x60, 0, 0, 0, 0, 0, protoICMPv6, errorTTL)
	dst = append(dst, pkt[24:40]...) // from the original destination
	dst = append(dst, pkt[8:24]...)  // to the original source
	dst = append(dst, icmpv6PacketTooBig, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(max(mtu, IPv6MinMTU)))
	dst = append(dst, quote...)
	out := dst[start:]
	icmp := out[IPv6HeaderLen:]
	binary.BigEndian.PutUint16(out[4:6], uint16(len(icmp)))
	// The checksum covers a pseudo-header: both addresses, the upper-layer
	// length and the next header (RFC 8200 §8.1).
	s := sum16(0, out[8:40])
	s += uint32(len(icmp)) + protoICMPv6
	binary.BigEndian.PutUint16(icmp[2:4], fold(sum16(s, icmp)))
	return dst, Refuse
}
