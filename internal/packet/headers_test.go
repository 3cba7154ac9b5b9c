package packet

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/meshnode/meshnode/internal/packet/packettest"
)

// withExt puts an IPv6 extension header of type typ right after the fixed
// header: hdr is its bytes, whose first (next header) is filled in.
func withExt(pkt []byte, typ uint8, hdr []byte) []byte {
	hdr = slices.Clone(hdr)
	hdr[0] = pkt[6]
	out := slices.Concat(pkt[:IPv6HeaderLen], hdr, pkt[IPv6HeaderLen:])
	out[6] = typ
	binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-IPv6HeaderLen))
	return out
}

// options is an IPv6 hop-by-hop or destination options header of n bytes
// (a multiple of 8), padded.
func options(n int) []byte {
	h := make([]byte, n)
	h[1] = byte(n/8 - 1)
	return h
}

// fragHeader is an IPv6 fragment header (RFC 8200 §4.5) at offset off
// (bytes, a multiple of 8).
func fragHeader(off uint16, more bool, id uint32) []byte {
	h := make([]byte, 8)
	m := off
	if more {
		m |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], m)
	binary.BigEndian.PutUint32(h[4:8], id)
	return h
}

// setID sets an IPv4 packet's identification (its header checksum is not
// read by Parse).
func setID(pkt []byte, id uint16) []byte {
	binary.BigEndian.PutUint16(pkt[4:6], id)
	return pkt
}

// withOptions gives an IPv4 packet a header with 4 bytes of options.
func withOptions(pkt []byte) []byte {
	out := slices.Concat(pkt[:IPv4HeaderLen], []byte{1, 1, 1, 0}, pkt[IPv4HeaderLen:])
	out[0] = 0x46
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	return out
}

func TestParse(t *testing.T) {
	v4 := packettest.IP{Src: src4, Dst: dst4}
	v6 := packettest.IP{Src: src6, Dst: dst6}
	ports := packettest.Ports{Src: 40000, Dst: 22}
	syn := header.TCPFlagSyn
	udp4 := packettest.UDP(v4, ports, 100)
	udp6 := packettest.UDP(v6, ports, 100)
	first4 := v4
	first4.Flags = header.IPv4FlagMoreFragments
	later4 := v4
	later4.FragOff = 1480
	tiny := v4
	tiny.FragOff = 8
	unreach4 := packettest.ICMP(packettest.IP{Src: dst4, Dst: src4}, 3, 3, nil, udp4[:IPv4HeaderLen+8])
	tooBig6 := packettest.ICMP(packettest.IP{Src: dst6, Dst: src6}, 2, 0, []byte{0, 0, 5, 0}, packettest.TCPFlow(v6, ports, syn))
	aboutEcho := packettest.ICMP(packettest.IP{Src: dst4, Dst: src4}, 11, 0, nil, packettest.Echo(v4, false, 77))
	aboutError := packettest.ICMP(packettest.IP{Src: src4, Dst: dst4}, 3, 1, nil, unreach4)
	chain := udp6
	for range maxExtHeaders {
		chain = withExt(chain, ipv6DestOpts, options(8))
	}

	for _, tc := range []struct {
		name string
		pkt  []byte
		ok   bool
		want Headers
	}{
		{"IPv4 TCP SYN", packettest.TCPFlow(v4, ports, syn), true,
			Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: TCPSyn}}},
		{"IPv6 TCP SYN-ACK", packettest.TCPFlow(v6, ports, syn|header.TCPFlagAck), true,
			Headers{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: TCPSyn | TCPAck}}},
		{"IPv4 UDP", udp4, true, Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}}},
		{"IPv4 with options", withOptions(udp4), true, Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}}},
		{"IPv6 UDP", udp6, true, Headers{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}}},
		{"IPv4 echo request", packettest.Echo(v4, false, 77), true,
			Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoICMP, ICMPType: ICMPv4EchoRequest, ICMPID: 77}}},
		{"IPv6 echo reply", packettest.Echo(v6, true, 78), true,
			Headers{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoICMPv6, ICMPType: ICMPv6EchoReply, ICMPID: 78}}},
		{"ICMPv4 port unreachable quoting UDP", unreach4, true, Headers{Src: dst4, Dst: src4, Transport: Transport{Proto: ProtoICMP, ICMPType: 3, ICMPCode: 3},
			HasQuoted: true, Quoted: Quoted{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}}}},
		{"ICMPv6 packet too big quoting TCP", tooBig6, true, Headers{Src: dst6, Dst: src6, Transport: Transport{Proto: ProtoICMPv6, ICMPType: 2},
			HasQuoted: true, Quoted: Quoted{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoTCP, SrcPort: 40000, DstPort: 22}}}},
		{"time exceeded quoting an echo request", aboutEcho, true, Headers{Src: dst4, Dst: src4, Transport: Transport{Proto: ProtoICMP, ICMPType: 11},
			HasQuoted: true, Quoted: Quoted{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoICMP, ICMPType: ICMPv4EchoRequest, ICMPID: 77}}}},
		{"an error about an error quotes nothing", aboutError, true, Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoICMP, ICMPType: 3, ICMPCode: 1}}},
		{"IPv4 first fragment", setID(packettest.UDP(first4, ports, 1000), 0x1234), true,
			Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}, Frag: FirstFragment, FragID: 0x1234}},
		{"IPv4 later fragment", setID(later4.Build(make([]byte, 100)), 0x1234), true,
			Headers{Src: src4, Dst: dst4, Transport: Transport{}, Frag: LaterFragment, FragID: 0x1234}},
		{"IPv6 hop-by-hop and destination options", withExt(withExt(udp6, ipv6DestOpts, options(16)), ipv6HopByHop, options(8)), true,
			Headers{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}}},
		{"IPv6 first fragment", withExt(udp6, ipv6Fragment, fragHeader(0, true, 0xabcdef)), true,
			Headers{Src: src6, Dst: dst6, Transport: Transport{Proto: ProtoUDP, SrcPort: 40000, DstPort: 22}, Frag: FirstFragment, FragID: 0xabcdef}},
		{"IPv6 later fragment", withExt(v6.Build(make([]byte, 64)), ipv6Fragment, fragHeader(1232, false, 0xabcdef)), true,
			Headers{Src: src6, Dst: dst6, Frag: LaterFragment, FragID: 0xabcdef}},
		{"other protocol", packettest.IP{Src: src4, Dst: dst4, Proto: 47}.Build(make([]byte, 24)), true,
			Headers{Src: src4, Dst: dst4, Transport: Transport{Proto: 47}}},

		{"IPv4 TCP fragment at offset 8 (RFC 1858)", packettest.IP{Src: src4, Dst: dst4, Proto: ProtoTCP, FragOff: 8}.Build(make([]byte, 20)), false, Headers{}},
		{"truncated TCP header", packettest.TCPFlow(v4, ports, syn)[:IPv4HeaderLen+12], false, Headers{}},
		{"IPv4 total length past the packet", packettest.TCPFlow(v4, ports, syn)[:30], false, Headers{}},
		{"IPv6 payload length past the packet", udp6[:len(udp6)-1], false, Headers{}},
		{"IPv4 header length below 20", append([]byte{0x44}, udp4[1:]...), false, Headers{}},
		{"two IPv6 fragment headers", withExt(withExt(udp6, ipv6Fragment, fragHeader(0, true, 1)), ipv6Fragment, fragHeader(0, true, 1)), false, Headers{}},
		{"IPv6 first fragment without its UDP header (RFC 7112)", withExt(v6.Build(nil), ipv6Fragment, fragHeader(0, true, 1))[:IPv6HeaderLen+8], false, Headers{}},
		{"too many IPv6 extension headers", chain, false, Headers{}},
		{"short ICMP", packettest.IP{Src: src4, Dst: dst4, Proto: ProtoICMP}.Build(make([]byte, 4)), false, Headers{}},
		{"not IP", []byte{0x20, 1, 2, 3}, false, Headers{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Headers
			ok := Parse(tc.pkt, &h)
			if ok != tc.ok {
				t.Fatalf("Parse = %v, want %v (%+v)", ok, tc.ok, h)
			}
			if ok && h != tc.want {
				t.Errorf("Parse:\n got %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	pkt := packettest.ICMP(packettest.IP{Src: dst6, Dst: src6}, 2, 0, nil, packettest.TCPFlow(packettest.IP{Src: src6, Dst: dst6}, packettest.Ports{Src: 1, Dst: 2}, header.TCPFlagAck))
	var h Headers
	if n := testing.AllocsPerRun(100, func() { Parse(pkt, &h) }); n != 0 {
		t.Errorf("Parse allocates %v times a packet", n)
	}
}

// Addresses come out as the family they are: an IPv4 packet's never as
// IPv4-mapped IPv6.
func TestParseAddressFamilies(t *testing.T) {
	var h Headers
	if !Parse(packettest.UDP(packettest.IP{Src: src4, Dst: dst4}, packettest.Ports{Src: 1, Dst: 2}, 0), &h) || !h.Src.Is4() || h.Dst != netip.MustParseAddr("100.88.0.2") {
		t.Errorf("IPv4 packet parsed as %+v", h)
	}
}
