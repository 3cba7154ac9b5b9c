package packet

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/meshnode/meshnode/internal/packet/packettest"
)

// The guard runs these on packets a peer sent (SYNs written into the TUN)
// and on whatever the host's applications send: any bytes at all.

func fuzzSeeds(f *testing.F) {
	v4 := packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagDontFragment}
	v6 := packettest.IP{Src: src6, Dst: dst6}
	f.Add(packettest.TCP(v4, header.TCPFlagSyn, packettest.MSSOption(1460), 0), 1288)
	f.Add(packettest.TCP(v6, header.TCPFlagSyn|header.TCPFlagAck, append([]byte{1, 4, 2}, packettest.MSSOption(1440)...), 0), 1268)
	f.Add(packettest.TCP(v4, header.TCPFlagAck, nil, 1400), 1328)
	f.Add(packettest.TCP(v6, header.TCPFlagAck, nil, 1400), 1216)
	f.Add([]byte{0x45}, 1000)
}

// FuzzClampMSS: no input panics, and a clamp changes at most the option's
// value and the checksum, never the length.
func FuzzClampMSS(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte, mss int) {
		before := bytes.Clone(pkt)
		changed := ClampMSS(pkt, mss)
		diff := 0
		for i := range pkt {
			if pkt[i] != before[i] {
				diff++
			}
		}
		if !changed && diff != 0 || diff > 4 {
			t.Fatalf("ClampMSS = %v changed %d bytes", changed, diff)
		}
	})
}

// FuzzTooBig: no input panics; an error is a well-formed IPv4 or IPv6
// packet within MaxError that quotes the start of the packet it refuses.
func FuzzTooBig(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte, mtu int) {
		prefix := []byte{1, 2, 3}
		out, v := TooBig(bytes.Clone(prefix), pkt, mtu)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatal("dst overwritten")
		}
		msg := out[len(prefix):]
		if v != Refuse {
			if len(msg) != 0 {
				t.Fatalf("%v with %d bytes of error", v, len(msg))
			}
			return
		}
		if len(msg) > MaxError {
			t.Fatalf("error of %d bytes", len(msg))
		}
		switch msg[0] >> 4 {
		case 4:
			if fold(sum16(0, msg[:IPv4HeaderLen])) != 0 || fold(sum16(0, msg[IPv4HeaderLen:])) != 0 {
				t.Fatal("IPv4 or ICMP checksum invalid")
			}
			if !bytes.HasPrefix(pkt, msg[IPv4HeaderLen+icmpHeaderLen:]) {
				t.Fatal("quote is not the packet's start")
			}
		case 6:
			if !bytes.HasPrefix(pkt, msg[IPv6HeaderLen+icmpHeaderLen:]) {
				t.Fatal("quote is not the packet's start")
			}
		default:
			t.Fatalf("error of IP version %d", msg[0]>>4)
		}
	})
}

// FuzzParse: no input panics; what Parse accepts has addresses of one
// family, the quoted packet's too, and ports only for TCP and UDP.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	ports := packettest.Ports{Src: 5, Dst: 7}
	v4, v6 := packettest.IP{Src: src4, Dst: dst4}, packettest.IP{Src: src6, Dst: dst6}
	udp4 := packettest.UDP(v4, ports, 8)
	f.Add(udp4, 0)
	f.Add(withExt(packettest.UDP(v6, ports, 8), ipv6Fragment, fragHeader(0, true, 9)), 0)
	f.Add(packettest.ICMP(packettest.IP{Src: dst4, Dst: src4}, 3, 3, nil, udp4), 0)
	f.Add(packettest.ICMP(packettest.IP{Src: dst6, Dst: src6}, 1, 4, nil, packettest.Echo(v6, false, 3)), 0)
	f.Fuzz(func(t *testing.T, pkt []byte, _ int) {
		var h Headers
		if !Parse(pkt, &h) {
			return
		}
		if !h.Src.IsValid() || h.Src.Is4() != h.Dst.Is4() {
			t.Fatalf("addresses %v %v", h.Src, h.Dst)
		}
		if h.HasQuoted && (h.Quoted.Src.Is4() != h.Src.Is4() || h.Quoted.Dst.Is4() != h.Src.Is4()) {
			t.Fatalf("quoted %v %v in a packet from %v", h.Quoted.Src, h.Quoted.Dst, h.Src)
		}
		if h.Proto != ProtoTCP && h.Proto != ProtoUDP && (h.SrcPort != 0 || h.DstPort != 0) {
			t.Fatalf("ports %d %d for protocol %d", h.SrcPort, h.DstPort, h.Proto)
		}
	})
}
