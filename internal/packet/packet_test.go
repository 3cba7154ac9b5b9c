package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/meshnode/meshnode/internal/packet/packettest"
)

var (
	src4 = netip.MustParseAddr("100.88.0.1")
	dst4 = netip.MustParseAddr("100.88.0.2")
	src6 = netip.MustParseAddr("fd6d:6573:686e::1")
	dst6 = netip.MustParseAddr("fd6d:6573:686e::2")
)

func TestClampMSS(t *testing.T) {
	v4 := packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagDontFragment}
	v6 := packettest.IP{Src: src6, Dst: dst6}
	syn, synAck, ack := header.TCPFlagSyn, header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagAck
	wscale := []byte{3, 3, 7}
	// sackOK + NOP puts the MSS value at an odd offset from the TCP header.
	odd := append([]byte{optNOP, 4, 2}, packettest.MSSOption(1460)...)
	for _, tc := range []struct {
		name    string
		ip      packettest.IP
		flags   header.TCPFlags
		opts    []byte
		mss     int
		changed bool
		want    int // MSS after
	}{
		{"IPv4 SYN above the clamp", v4, syn, append(packettest.MSSOption(1460), wscale...), 1288, true, 1288},
		{"IPv4 SYN-ACK above the clamp", v4, synAck, packettest.MSSOption(1380), 1288, true, 1288},
		{"MSS at an odd offset", v4, syn, odd, 1176, true, 1176},
		{"IPv6 SYN", v6, syn, packettest.MSSOption(1360), 1268, true, 1268},
		{"MSS already below the clamp", v4, syn, packettest.MSSOption(1200), 1288, false, 1200},
		{"MSS equal to the clamp", v4, syn, packettest.MSSOption(1288), 1288, false, 1288},
		{"not a SYN", v4, ack, packettest.MSSOption(1460), 1288, false, 1460},
		{"SYN without an MSS option", v4, syn, wscale, 1288, false, 0},
		{"MSS option after end of options", v4, syn, append([]byte{optEnd, 0, 0, 0}, packettest.MSSOption(1460)...), 1288, false, 0},
		{"option length running past the header", v4, syn, []byte{optNOP, optNOP, 8, 10}, 1288, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := packettest.TCP(tc.ip, tc.flags, tc.opts, 100)
			before := bytes.Clone(pkt)
			if got := ClampMSS(pkt, tc.mss); got != tc.changed {
				t.Fatalf("ClampMSS = %v, want %v", got, tc.changed)
			}
			if !tc.changed && !bytes.Equal(pkt, before) {
				t.Fatal("packet changed although ClampMSS reported no change")
			}
			if got := packettest.MSS(pkt); tc.want != 0 && got != tc.want {
				t.Errorf("MSS after = %d, want %d", got, tc.want)
			}
			if !packettest.TCPChecksumValid(pkt) {
				t.Error("TCP checksum invalid after clamping")
			}
		})
	}
}

func TestClampMSSLeavesOthersAlone(t *testing.T) {
	frag := packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagMoreFragments}
	udp := packettest.IP{Src: src4, Dst: dst4, Proto: uint8(header.UDPProtocolNumber)}
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"first fragment of a SYN", packettest.TCP(frag, header.TCPFlagSyn, packettest.MSSOption(1460), 0)},
		{"UDP", udp.Build(make([]byte, 100))},
		{"truncated IPv4", packettest.TCP(packettest.IP{Src: src4, Dst: dst4}, header.TCPFlagSyn, packettest.MSSOption(1460), 0)[:30]},
		{"empty", nil},
		{"IPv6 with a hop-by-hop header", packettest.IP{Src: src6, Dst: dst6, Proto: 0}.Build(make([]byte, 64))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.pkt)
			if ClampMSS(tc.pkt, 1000) || !bytes.Equal(tc.pkt, before) {
				t.Fatal("ClampMSS changed a packet it must leave alone")
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pkt      []byte
		src, dst netip.Addr
		ok       bool
	}{
		{"IPv4", packettest.IP{Src: src4, Dst: dst4}.Build(nil), src4, dst4, true},
		{"IPv6", packettest.IP{Src: src6, Dst: dst6}.Build(nil), src6, dst6, true},
		{"short", []byte{0x45, 0}, netip.Addr{}, netip.Addr{}, false},
		{"version 5", append([]byte{0x50}, make([]byte, 40)...), netip.Addr{}, netip.Addr{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sok := Src(tc.pkt)
			d, dok := Dst(tc.pkt)
			if s != tc.src || d != tc.dst || sok != tc.ok || dok != tc.ok {
				t.Errorf("Src, Dst = %v %v, %v %v; want %v %v, %v", s, sok, d, dok, tc.src, tc.dst, tc.ok)
			}
		})
	}
}

// icmpEcho is an ICMP echo request body of n bytes (type 8 or ICMPv6 128).
func icmpEcho(typ byte, n int) []byte {
	b := make([]byte, n)
	b[0] = typ
	return b
}

func TestTooBig(t *testing.T) {
	df := packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagDontFragment}
	v6 := packettest.IP{Src: src6, Dst: dst6}
	icmp4 := packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagDontFragment, Proto: protoICMP}
	icmp6 := packettest.IP{Src: src6, Dst: dst6, Proto: protoICMPv6}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		mtu     int
		verdict Verdict
		wantMTU int
	}{
		{"IPv4 with DF", packettest.TCP(df, header.TCPFlagAck, nil, 1380), 1328, Refuse, 1328},
		{"IPv4 ICMP echo with DF", icmp4.Build(icmpEcho(8, 1400)), 1216, Refuse, 1216},
		{"IPv4 without DF: a router fragments it", packettest.TCP(packettest.IP{Src: src4, Dst: dst4}, header.TCPFlagAck, nil, 1380), 1328, Forward, 0},
		{"IPv4 non-first fragment", packettest.IP{Src: src4, Dst: dst4, Flags: header.IPv4FlagDontFragment, FragOff: 1480, Proto: 17}.Build(make([]byte, 1400)), 1328, Drop, 0},
		{"IPv4 ICMP error", icmp4.Build(icmpEcho(3, 1400)), 1328, Drop, 0},
		{"IPv4 from 0.0.0.0", packettest.IP{Src: netip.IPv4Unspecified(), Dst: dst4, Flags: header.IPv4FlagDontFragment, Proto: 17}.Build(make([]byte, 1400)), 1328, Drop, 0},
		{"IPv6", packettest.TCP(v6, header.TCPFlagAck, nil, 1360), 1328, Refuse, 1328},
		{"IPv6 under a sub-1280 path: never below 1280", packettest.TCP(v6, header.TCPFlagAck, nil, 1300), 1216, Refuse, IPv6MinMTU},
		{"IPv6 within 1280 under a sub-1280 path", packettest.TCP(v6, header.TCPFlagAck, nil, 1200), 1216, Forward, 0},
		{"IPv6 jumbo quoted to fill 1280", icmp6.Build(icmpEcho(128, 8000)), 1420, Refuse, 1420},
		{"IPv6 ICMPv6 error", icmp6.Build(icmpEcho(1, 1400)), 1328, Drop, 0},
		{"IPv6 from a multicast source", packettest.IP{Src: netip.MustParseAddr("ff02::1"), Dst: dst6, Proto: 17}.Build(make([]byte, 1400)), 1328, Drop, 0},
		{"not IP", make([]byte, 1500), 1328, Drop, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("headroom")
			out, v := TooBig(bytes.Clone(prefix), tc.pkt, tc.mtu)
			if v != tc.verdict {
				t.Fatalf("verdict %v, want %v", v, tc.verdict)
			}
			if !bytes.HasPrefix(out, prefix) {
				t.Fatal("TooBig overwrote what dst held")
			}
			msg := out[len(prefix):]
			if v != Refuse {
				if len(msg) != 0 {
					t.Fatalf("%v appended %d bytes", v, len(msg))
				}
				return
			}
			if tc.pkt[0]>>4 == 4 {
				checkFragNeeded(t, msg, tc.pkt, tc.wantMTU)
			} else {
				checkPacketTooBig(t, msg, tc.pkt, tc.wantMTU)
			}
		})
	}
}

// checkFragNeeded parses an ICMPv4 "fragmentation needed" and checks it
// against the packet it refuses.
func checkFragNeeded(t *testing.T, msg, orig []byte, mtu int) {
	t.Helper()
	h, err := ipv4.ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if h.Protocol != protoICMP || h.TotalLen != len(msg) || !h.Src.Equal(dst4.AsSlice()) || !h.Dst.Equal(src4.AsSlice()) {
		t.Errorf("header %v: want ICMP of %d bytes from %v to %v", h, len(msg), dst4, src4)
	}
	if !header.IPv4(msg).IsChecksumValid() {
		t.Error("IPv4 header checksum invalid")
	}
	if len(msg) > ipv4ErrorMax {
		t.Errorf("error of %d bytes, more than %d", len(msg), ipv4ErrorMax)
	}
	body := msg[h.Len:]
	if checksum.Checksum(body, 0) != 0xffff {
		t.Error("ICMP checksum invalid")
	}
	m, err := icmp.ParseMessage(protoICMP, body)
	if err != nil {
		t.Fatal(err)
	}
	du, ok := m.Body.(*icmp.DstUnreach)
	if m.Type != ipv4.ICMPTypeDestinationUnreachable || m.Code != icmpFragNeeded || !ok {
		t.Fatalf("ICMP type %v code %d, want destination unreachable, fragmentation needed", m.Type, m.Code)
	}
	if got := int(header.ICMPv4(body).MTU()); got != mtu {
		t.Errorf("next-hop MTU %d, want %d", got, mtu)
	}
	if !bytes.HasPrefix(orig, du.Data) || len(du.Data) < header.IPv4MinimumSize+8 {
		t.Errorf("quote of %d bytes is not the original's header and first bytes", len(du.Data))
	}
}

// checkPacketTooBig parses an ICMPv6 "packet too big".
func checkPacketTooBig(t *testing.T, msg, orig []byte, mtu int) {
	t.Helper()
	h, err := ipv6.ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if h.NextHeader != protoICMPv6 || h.PayloadLen != len(msg)-IPv6HeaderLen || !h.Src.Equal(net6(orig, 24)) || !h.Dst.Equal(net6(orig, 8)) {
		t.Errorf("header %v: want ICMPv6 from the original's destination to its source", h)
	}
	if len(msg) > MaxError {
		t.Errorf("error of %d bytes, more than %d", len(msg), MaxError)
	}
	body := header.ICMPv6(msg[IPv6HeaderLen:])
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: body[:header.ICMPv6MinimumSize], Src: tcpip.AddrFromSlice(h.Src), Dst: tcpip.AddrFromSlice(h.Dst),
		PayloadCsum: checksum.Checksum(body[header.ICMPv6MinimumSize:], 0), PayloadLen: len(body) - header.ICMPv6MinimumSize,
	})
	if body.Checksum() != want {
		t.Errorf("ICMPv6 checksum %#04x, want %#04x", body.Checksum(), want)
	}
	m, err := icmp.ParseMessage(protoICMPv6, body)
	if err != nil {
		t.Fatal(err)
	}
	ptb, ok := m.Body.(*icmp.PacketTooBig)
	if !ok {
		t.Fatalf("ICMPv6 %v, want packet too big", m.Type)
	}
	if ptb.MTU != mtu {
		t.Errorf("MTU %d, want %d", ptb.MTU, mtu)
	}
	if !bytes.HasPrefix(orig, ptb.Data) || len(ptb.Data) < min(len(orig), MaxError-IPv6HeaderLen-icmpHeaderLen) {
		t.Errorf("quote of %d bytes: want the original's first %d", len(ptb.Data), min(len(orig), MaxError-48))
	}
}

func net6(pkt []byte, off int) []byte { return pkt[off : off+16] }

func TestUpdateChecksumMatchesRecompute(t *testing.T) {
	b := []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11}
	for off := 0; off+2 <= len(b); off++ {
		old := binary.BigEndian.Uint16(b[off:])
		sum := fold(sum16(0, b))
		c := bytes.Clone(b)
		binary.BigEndian.PutUint16(c[off:], 0x0550)
		if got, want := updateChecksum(sum, old, 0x0550, off%2 == 1), fold(sum16(0, c)); got != want {
			t.Errorf("offset %d: incremental %#04x, recomputed %#04x", off, got, want)
		}
	}
}
