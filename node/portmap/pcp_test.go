package portmap

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func TestAnnounce(t *testing.T) {
	tests := []struct {
		name    string
		handle  func([]byte) []byte
		wantErr error
		errText string
	}{
		{name: "PCP server", handle: pcpGateway{}.handle},
		{name: "not authorized", handle: pcpGateway{result: 2}.handle, wantErr: &ResultError{}, errText: "PCP result 2 (NOT_AUTHORIZED"},
		{name: "NAT-PMP-only server", handle: natpmpGateway{}.handle, wantErr: errOtherVersion},
		{name: "malformed answer ignored", handle: func([]byte) []byte { return pcpHeaderAnswer(0, 0)[:20] }, wantErr: ErrNoAnswer},
		{name: "answer without R bit ignored", handle: func(req []byte) []byte { return req }, wantErr: ErrNoAnswer},
		{name: "silent", handle: func([]byte) []byte { return nil }, wantErr: ErrNoAnswer, errText: "no answer within"},
	}
	// RFC 6887 §7.1: version 2, opcode 0, reserved, lifetime 0, then the
	// client's address as IPv4-mapped IPv6.
	want := []byte{
		2, 0, 0, 0,
		0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1,
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newFakeServer(t, tc.handle)
			timeout := answerTimeout
			if errors.Is(tc.wantErr, ErrNoAnswer) {
				timeout = silenceTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			checkErr(t, announce(ctx, srv.addr(), testRTO), tc.wantErr, tc.errText)
			reqs := srv.requests()
			if len(reqs) == 0 {
				t.Fatal("server saw no request")
			}
			hexEqual(t, "ANNOUNCE", reqs[0], want)
		})
	}
}

func TestPCPMapRequest(t *testing.T) {
	m := pcpMapping{nonce: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, internal: 41820}
	client := netip.MustParseAddr("192.168.1.20")
	header := func(lifetime byte) []byte {
		return []byte{
			2, 1, 0, 0,
			0, 0, 0x1c, lifetime,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 20,
			1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, // nonce
			17, 0, 0, 0, // UDP, reserved
		}
	}
	tests := []struct {
		name      string
		suggested netip.AddrPort
		lifetime  uint32
		want      []byte
	}{
		{
			name:      "no preferred external address",
			suggested: netip.AddrPortFrom(netip.Addr{}, 41820),
			lifetime:  7200,
			want: append(header(0x20), 0xa3, 0x5c, 0xa3, 0x5c,
				0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0),
		},
		{
			name:      "renewal suggests the granted address",
			suggested: netip.MustParseAddrPort("198.18.0.7:50000"),
			lifetime:  7200,
			want: append(header(0x20), 0xa3, 0x5c, 0xc3, 0x50,
				0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 7),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hexEqual(t, "MAP", pcpMapRequest(m, client, tc.suggested, tc.lifetime), tc.want)
		})
	}
}

func TestParsePCPMap(t *testing.T) {
	m := pcpMapping{nonce: [12]byte{9, 9, 9}, internal: 41820}
	client := netip.MustParseAddr("127.0.0.1")
	answer := func(g pcpGateway, mm pcpMapping) []byte {
		return g.handle(pcpMapRequest(mm, client, netip.AddrPortFrom(netip.Addr{}, 41820), 7200))
	}
	other := m
	other.nonce[0] = 8
	tests := []struct {
		name     string
		answer   []byte
		want     netip.AddrPort
		wantLife uint32
		wantErr  error
	}{
		{name: "granted", answer: answer(pcpGateway{port: 50000, maxLife: 3600}, m), want: netip.MustParseAddrPort("198.18.0.7:50000"), wantLife: 3600},
		{name: "other nonce", answer: answer(pcpGateway{maxLife: 3600}, other), wantErr: errNotResponse},
		{name: "header only", answer: pcpHeaderAnswer(pcpOpMap, 0), wantErr: errNotResponse},
		{name: "ANNOUNCE answer", answer: pcpHeaderAnswer(pcpOpAnnounce, 0), wantErr: errNotResponse},
		{name: "no resources", answer: answer(pcpGateway{result: 8}, m), wantErr: &ResultError{}},
		{name: "NAT-PMP answer", answer: []byte{0, 129, 0, 1, 0, 0, 0, 1}, wantErr: errOtherVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, life, err := parsePCPMap(tc.answer, m)
			checkErr(t, err, tc.wantErr, "")
			if got != tc.want || life != tc.wantLife {
				t.Errorf("got %v for %d s, want %v for %d s", got, life, tc.want, tc.wantLife)
			}
		})
	}
}
