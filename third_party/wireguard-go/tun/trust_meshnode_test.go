package tun

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// meshnode's test of NativeTun.TrustChecksums (third_party/README.md): a
// trusting device's GRO coalesces segments whatever their checksums say
// (WireGuard's tag already vouched for them) and hands the result to the
// kernel as CHECKSUM_PARTIAL; an untrusting one, upstream's default,
// refuses segments whose checksums are wrong.
func TestGROTrustsAuthenticChecksums(t *testing.T) {
	src, dst := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	for _, tc := range []struct {
		name      string
		udp       bool
		trusted   bool
		corrupt   bool // the segments' transport checksums are zeroed
		wantWrite int
	}{
		{"TCP, trusted, wrong checksums: coalesced", false, true, true, 1},
		{"TCP, untrusted, wrong checksums: apart", false, false, true, 3},
		{"TCP, untrusted, right checksums: coalesced", false, false, false, 1},
		{"UDP, trusted, wrong checksums: coalesced", true, true, true, 1},
		{"UDP, untrusted, wrong checksums: apart", true, false, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 100
			bufs := make([][]byte, 3)
			for i := range bufs {
				payload := bytes.Repeat([]byte{byte(0x10 + i)}, size)
				csumAt := virtioNetHdrLen + 20 + 16
				if tc.udp {
					bufs[i] = meshUDP4(src, dst, payload)
					csumAt = virtioNetHdrLen + 20 + 6
				} else {
					bufs[i] = meshTCP4(src, dst, uint32(1+i*size), payload)
				}
				if tc.corrupt {
					bufs[i][csumAt], bufs[i][csumAt+1] = 0, 0
				}
			}
			tcp, udp := newTCPGROTable(), newUDPGROTable()
			tcp.trusted, udp.trusted = tc.trusted, tc.trusted
			var toWrite []int
			if err := handleGRO(bufs, virtioNetHdrLen, tcp, udp, true, &toWrite); err != nil {
				t.Fatal(err)
			}
			if len(toWrite) != tc.wantWrite {
				t.Fatalf("%d packets to write, want %d", len(toWrite), tc.wantWrite)
			}
			if tc.wantWrite != 1 {
				return
			}
			var hdr virtioNetHdr
			if err := hdr.decode(bufs[toWrite[0]]); err != nil {
				t.Fatal(err)
			}
			if hdr.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 || hdr.gsoType == unix.VIRTIO_NET_HDR_GSO_NONE {
				t.Fatalf("coalesced packet's header %+v: want NEEDS_CSUM and a GSO type, so the kernel takes it as partially summed", hdr)
			}
		})
	}
}

// meshnode's test of gsoSplit's pseudo-header sum taken once a super-
// segment: every segment, the short last one too, carries a checksum the
// receiver accepts.
func TestGSOSplitChecksums(t *testing.T) {
	src, dst := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	for _, tc := range []struct {
		name     string
		payload  int
		gsoSize  uint16
		segments int
	}{
		{"even", 3000, 1000, 3},
		{"short last", 2500, 1000, 3},
		{"odd last", 2501, 1000, 3},
		{"one", 700, 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.payload)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			in := meshTCP4(src, dst, 1, payload)[virtioNetHdrLen:]
			hdr := virtioNetHdr{
				flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
				gsoType:    unix.VIRTIO_NET_HDR_GSO_TCPV4,
				hdrLen:     40,
				gsoSize:    tc.gsoSize,
				csumStart:  20,
				csumOffset: 16,
			}
			out := make([][]byte, 8)
			sizes := make([]int, len(out))
			for i := range out {
				out[i] = make([]byte, 2000)
			}
			n, err := gsoSplit(in, hdr, out, sizes, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.segments {
				t.Fatalf("%d segments, want %d", n, tc.segments)
			}
			var got []byte
			for i := range n {
				seg := out[i][:sizes[i]]
				if !checksumValid(seg, 20, unix.IPPROTO_TCP, false) {
					t.Errorf("segment %d (%d bytes): transport checksum %#04x is wrong", i, len(seg), binary.BigEndian.Uint16(seg[36:]))
				}
				got = append(got, seg[40:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("segments carry %d bytes that are not the payload's %d", len(got), len(payload))
			}
		})
	}
}
