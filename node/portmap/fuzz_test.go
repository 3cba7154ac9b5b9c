package portmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// The seed corpora in testdata/fuzz are the fake gateways' answers
// (natpmpGateway, pcpGateway) to this package's own requests, and SSDP
// answers and requests as mSearch writes them.

// checkRefusal checks an error from a NAT-PMP or PCP parser: a stray
// datagram (keep waiting), another protocol version, or a refusal with
// code, the result code the answer carries.
func checkRefusal(t *testing.T, b []byte, err error, code uint16) {
	t.Helper()
	var re *ResultError
	switch {
	case errors.Is(err, errNotResponse), errors.Is(err, errOtherVersion):
	case errors.As(err, &re):
		if re.Code == 0 || re.Code != code {
			t.Fatalf("answer %x: result %d, the answer says %d", b, re.Code, code)
		}
	default:
		t.Fatalf("answer %x: unexpected error %v", b, err)
	}
}

// FuzzNATPMP checks the NAT-PMP answer parsers (RFC 6886 §3.2, §3.3): an
// answer is taken only when it is a successful answer to the request made
// (version 0, the request's opcode plus 128, result 0, long enough, for a
// mapping our internal port), and the values come from their fields.
func FuzzNATPMP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, internal uint16) {
		success := func(op byte, n int) bool {
			return len(b) >= n && b[0] == 0 && b[1] == 128+op && b[2] == 0 && b[3] == 0
		}
		ext, err := parseNATPMPExternal(b)
		if err != nil {
			if success(natpmpOpExternal, natpmpExternalLen) {
				t.Fatalf("external address answer %x refused: %v", b, err)
			}
			if len(b) >= 4 {
				checkRefusal(t, b, err, binary.BigEndian.Uint16(b[2:4]))
			}
		} else if !success(natpmpOpExternal, natpmpExternalLen) || ext != netip.AddrFrom4([4]byte(b[8:12])) {
			t.Fatalf("parseNATPMPExternal(%x) = %v", b, ext)
		}

		port, life, err := parseNATPMPMap(b, internal)
		ours := success(natpmpOpMapUDP, natpmpMapAnswerLen) && binary.BigEndian.Uint16(b[8:10]) == internal
		if err != nil {
			if ours {
				t.Fatalf("mapping answer %x for port %d refused: %v", b, internal, err)
			}
			if len(b) >= 4 {
				checkRefusal(t, b, err, binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		if !ours || port != binary.BigEndian.Uint16(b[10:12]) || life != binary.BigEndian.Uint32(b[12:16]) {
			t.Fatalf("parseNATPMPMap(%x, %d) = %d, %d", b, internal, port, life)
		}
	})
}

// FuzzPCP checks the PCP answer parsers (RFC 6887 §7.2, §11.1, with §8.3's
// checks): an answer is taken only when it is a well-sized successful
// answer to our MAP (nonce, protocol and internal port echoed), and the
// mapping comes from its fields.
func FuzzPCP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, nonce []byte, internal uint16) {
		m := pcpMapping{internal: internal}
		copy(m.nonce[:], nonce)
		success := func(op byte, n int) bool {
			return len(b) >= n && len(b) <= pcpMaxLen && len(b)%4 == 0 && b[0] == pcpVersion && b[1] == pcpResponse|op && b[3] == 0
		}
		life, err := parsePCPHeader(b, pcpOpAnnounce)
		if err != nil {
			if success(pcpOpAnnounce, pcpHeaderLen) {
				t.Fatalf("announce answer %x refused: %v", b, err)
			}
			if len(b) >= 4 {
				checkRefusal(t, b, err, uint16(b[3]))
			}
		} else if !success(pcpOpAnnounce, pcpHeaderLen) || life != binary.BigEndian.Uint32(b[4:8]) {
			t.Fatalf("parsePCPHeader(%x) = %d", b, life)
		}

		ext, life, err := parsePCPMap(b, m)
		ours := success(pcpOpMap, pcpMapLen) && bytes.Equal(b[24:36], m.nonce[:]) && b[36] == protoUDP && binary.BigEndian.Uint16(b[40:42]) == internal
		if err != nil {
			if ours {
				t.Fatalf("MAP answer %x refused: %v", b, err)
			}
			if len(b) >= 4 {
				checkRefusal(t, b, err, uint16(b[3]))
			}
			return
		}
		want := netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[44:60])).Unmap(), binary.BigEndian.Uint16(b[42:44]))
		if !ours || ext != want || life != binary.BigEndian.Uint32(b[4:8]) {
			t.Fatalf("parsePCPMap(%x) = %v, %d", b, ext, life)
		}
	})
}

// FuzzSSDP checks the UPnP search answer test: only an HTTP response with
// status 200 counts, and never a request, such as our own M-SEARCH looped
// back by the multicast group.
func FuzzSSDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if !ssdpOK(b) {
			return
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		proto, rest, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(" "))
		if !ok || !bytes.HasPrefix(proto, []byte("HTTP/")) || !bytes.HasPrefix(rest, []byte("200")) {
			t.Fatalf("ssdpOK(%q): the status line is not an HTTP 200", b)
		}
	})
}
