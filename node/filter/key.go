package filter

import (
	"net/netip"

	"github.com/meshnode/meshnode/internal/packet"
)

// family is an address family: the index of per-family tables.
type family uint8

const (
	v4 family = iota
	v6
	numFamilies
)

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return v4
	}
	return v6
}

// kind tells apart keys whose other fields may coincide.
type kind uint8

const (
	kindFlow        kind = iota // TCP, UDP, other protocols: by ports (0 without)
	kindEchoRequest             // an ICMP echo request: both ports hold its id
	kindEchoReply               // the reply to one
	kindFragment                // a fragmented datagram: the ports hold its id
)

// key is one direction of a flow as its packets carry it, or a fragmented
// datagram. Comparable and free of pointers: a map key that costs the
// garbage collector nothing.
type key struct {
	src, dst     u128 // addrValue: IPv4 in the low 32 bits
	sport, dport uint16
	proto        uint8
	fam          family
	kind         kind
}

// reverse is the key of the other direction: a reply's.
func (k key) reverse() key {
	r := k
	r.src, r.dst = k.dst, k.src
	r.sport, r.dport = k.dport, k.sport
	switch k.kind {
	case kindEchoRequest:
		r.kind = kindEchoReply
	case kindEchoReply:
		r.kind = kindEchoRequest
	}
	return r
}

// flowKey is the key of a packet (or of the packet an ICMP error quotes)
// and what tracking it starts: ok is false for packets that open nothing
// (ICMP other than an echo request, and TCP resets).
func flowKey(src, dst netip.Addr, t *packet.Transport) (key, state, bool) {
	k := key{src: addrValue(src), dst: addrValue(dst), proto: t.Proto, fam: familyOf(src)}
	is6 := k.fam == v6
	switch {
	case t.Proto == packet.ProtoTCP:
		k.sport, k.dport = t.SrcPort, t.DstPort
		st, ok := tcpOpen(t.TCPFlags)
		return k, st, ok
	case t.Proto == packet.ProtoUDP:
		k.sport, k.dport = t.SrcPort, t.DstPort
	case packet.IsEchoRequest(is6, t.Proto, t.ICMPType):
		k.kind, k.sport, k.dport = kindEchoRequest, t.ICMPID, t.ICMPID
		return k, echoNew, true
	case packet.IsEchoReply(is6, t.Proto, t.ICMPType):
		k.kind, k.sport, k.dport = kindEchoReply, t.ICMPID, t.ICMPID
		return k, 0, false
	case t.Proto == packet.ProtoICMP && !is6, t.Proto == packet.ProtoICMPv6 && is6:
		return k, 0, false
	}
	return k, udpNew, true
}

// fragmentKey is the key of the datagram a fragment belongs to (RFC 791
// §3.2: source, destination, protocol and identification).
func fragmentKey(h *packet.Headers) key {
	return key{
		src: addrValue(h.Src), dst: addrValue(h.Dst), proto: h.Proto, fam: familyOf(h.Src), kind: kindFragment,
		sport: uint16(h.FragID >> 16), dport: uint16(h.FragID),
	}
}
