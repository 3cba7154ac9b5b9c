package portmap

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Test timing. The servers are on loopback and answer at once, so an
// exchange expected to be answered gets a deadline generous for a loaded
// machine and returns early; one expected to meet silence waits out its
// whole deadline, so that is short, and the retransmission schedule is
// scaled down with it.
const (
	// testRTO is the first retransmission interval, a tenth of RFC 6886's.
	testRTO = 25 * time.Millisecond
	// silenceTimeout gives a silent server three sends (0, 25 and 75 ms),
	// the fourth due at 175 ms.
	silenceTimeout = 125 * time.Millisecond
	// answerTimeout bounds an exchange the server answers.
	answerTimeout = 10 * time.Second
)

func TestExternalAddress(t *testing.T) {
	tests := []struct {
		name    string
		handle  func([]byte) []byte
		closed  bool // no server: the port is closed
		want    netip.Addr
		wantErr error
		errText string
	}{
		{name: "success", handle: natpmpGateway{maxLife: 7200}.handle, want: testExternal},
		{name: "stray answer ignored, retransmission answered", handle: strayFirst(natpmpGateway{}.handle), want: testExternal},
		{name: "refused", handle: natpmpGateway{result: 2}.handle, wantErr: &ResultError{}, errText: "result 2 (not authorized"},
		{name: "network failure", handle: natpmpGateway{result: 3}.handle, wantErr: &ResultError{}, errText: "no external address yet"},
		{name: "PCP-only server", handle: func([]byte) []byte { return pcpHeaderAnswer(0, 1) }, wantErr: errOtherVersion},
		{name: "silent", handle: func([]byte) []byte { return nil }, wantErr: ErrNoAnswer, errText: "no answer within"},
		{name: "port closed", closed: true, wantErr: ErrNoAnswer, errText: "port closed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srv *fakeServer
			addr := closedPort(t)
			if !tc.closed {
				srv = newFakeServer(t, tc.handle)
				addr = srv.addr()
			}
			timeout := answerTimeout
			if errors.Is(tc.wantErr, ErrNoAnswer) && !tc.closed {
				timeout = silenceTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			got, err := externalAddress(ctx, addr, testRTO)
			checkErr(t, err, tc.wantErr, tc.errText)
			if got != tc.want {
				t.Errorf("external address = %v, want %v", got, tc.want)
			}
			if srv != nil {
				reqs := srv.requests()
				if len(reqs) == 0 {
					t.Fatal("server saw no request")
				}
				hexEqual(t, "request", reqs[0], []byte{0, 0})
			}
		})
	}
}

// TestExternalAddressRetransmits checks RFC 6886 §3.1's schedule, scaled
// down: a lost request is sent again (testRTO, then twice that later) until
// the deadline. The deadline, 8 testRTO, falls well after the third send
// (3 testRTO) and well before the fifth (15 testRTO), so a loaded machine
// delaying the sends doesn't change the count.
func TestExternalAddressRetransmits(t *testing.T) {
	const window = 8 * testRTO
	srv := newFakeServer(t, func([]byte) []byte { return nil })
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	if _, err := externalAddress(ctx, srv.addr(), testRTO); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v, want ErrNoAnswer", err)
	}
	waitFor(t, "3 sends", func() bool { return len(srv.requests()) >= 3 })
	for i, r := range srv.requests() {
		hexEqual(t, "retransmission", r, []byte{0, 0})
		if i > 3 {
			t.Errorf("%d sends within %v; the schedule allows 4", len(srv.requests()), window)
		}
	}
}

func TestNATPMPMapRequest(t *testing.T) {
	tests := []struct {
		name                string
		internal, suggested uint16
		lifetime            uint32
		want                []byte
	}{
		{"map 41820 for 7200 s", 41820, 41820, 7200, []byte{0, 1, 0, 0, 0xa3, 0x5c, 0xa3, 0x5c, 0, 0, 0x1c, 0x20}},
		{"renew suggesting the granted port", 41820, 50000, 7200, []byte{0, 1, 0, 0, 0xa3, 0x5c, 0xc3, 0x50, 0, 0, 0x1c, 0x20}},
		{"delete", 41820, 0, 0, []byte{0, 1, 0, 0, 0xa3, 0x5c, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hexEqual(t, "request", natpmpMapRequest(tc.internal, tc.suggested, tc.lifetime), tc.want)
		})
	}
}

func TestParseNATPMPMap(t *testing.T) {
	ok := []byte{0, 129, 0, 0, 0, 0, 0, 42, 0xa3, 0x5c, 0xc3, 0x50, 0, 0, 0x0e, 0x10}
	tests := []struct {
		name     string
		answer   []byte
		wantPort uint16
		wantLife uint32
		wantErr  error
	}{
		{name: "granted", answer: ok, wantPort: 50000, wantLife: 3600},
		{name: "other internal port", answer: append([]byte{0, 129, 0, 0, 0, 0, 0, 42, 0, 1}, ok[10:]...), wantErr: errNotResponse},
		{name: "short", answer: ok[:12], wantErr: errNotResponse},
		{name: "external address answer", answer: []byte{0, 128, 0, 0, 0, 0, 0, 42, 198, 18, 0, 7}, wantErr: errNotResponse},
		{name: "out of resources", answer: []byte{0, 129, 0, 4, 0, 0, 0, 42, 0xa3, 0x5c, 0, 0, 0, 0, 0, 0}, wantErr: &ResultError{}},
		{name: "version 2", answer: pcpHeaderAnswer(pcpOpMap, 0), wantErr: errOtherVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port, life, err := parseNATPMPMap(tc.answer, 41820)
			checkErr(t, err, tc.wantErr, "")
			if port != tc.wantPort || life != tc.wantLife {
				t.Errorf("got port %d lifetime %d, want %d %d", port, life, tc.wantPort, tc.wantLife)
			}
		})
	}
}

// strayFirst answers the first request with an answer to another opcode,
// which the client must ignore, and later ones with handle.
func strayFirst(handle func([]byte) []byte) func([]byte) []byte {
	var n atomic.Int32
	return func(req []byte) []byte {
		if n.Add(1) == 1 {
			return []byte{0, 129, 0, 0}
		}
		return handle(req)
	}
}

// pcpHeaderAnswer is a bare PCP response header.
func pcpHeaderAnswer(op, result byte) []byte {
	b := make([]byte, pcpHeaderLen)
	b[0], b[1], b[3] = pcpVersion, pcpResponse|op, result
	return b
}

// checkErr asserts err matches want: nil, a sentinel (errors.Is) or a
// *ResultError (errors.As); text, when set, must appear in the message.
func checkErr(t *testing.T, err, want error, text string) {
	t.Helper()
	var re *ResultError
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == nil:
		return
	case errors.As(want, &re):
		if !errors.As(err, &re) {
			t.Fatalf("err = %v, want a *ResultError", err)
		}
	case !errors.Is(err, want):
		t.Fatalf("err = %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("error %q does not say %q", err, text)
	}
}
