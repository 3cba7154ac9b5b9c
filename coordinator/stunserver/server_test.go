package stunserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wait"
)

const (
	software   = "meshnode test"
	ioDeadline = 10 * time.Second // generous: -race on a loaded machine
	pollEvery  = 20 * time.Millisecond
)

// counter records Count calls.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) count(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r]++
}

func (c *counter) get(r string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[r]
}

func listen(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		testenv.Unavailable(t, "cannot listen on %s (the 4-socket tests need 127.0.0.2 on loopback, as on Linux): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serve starts a server on conns and stops it at cleanup.
func serve(t *testing.T, conns Conns) (*Server, *counter) {
	t.Helper()
	c := &counter{n: map[string]int{}}
	return serveWith(t, conns, Options{Software: software, Count: c.count}), c
}

// serveWith starts a server with opts on conns and stops it at cleanup.
func serveWith(t *testing.T, conns Conns, opts Options) *Server {
	t.Helper()
	s := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conns) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func fourConns(t *testing.T) Conns {
	return Conns{
		Primary:   listen(t, "127.0.0.1:0"),
		AltPort:   listen(t, "127.0.0.1:0"),
		AltIP:     listen(t, "127.0.0.2:0"),
		Alternate: listen(t, "127.0.0.2:0"),
	}
}

func ap(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	p, err := addrPort(a)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// exchange sends req to server and returns the first reply and its source.
func exchange(t *testing.T, client net.PacketConn, server net.Addr, req []byte) ([]byte, netip.AddrPort) {
	t.Helper()
	if _, err := client.WriteTo(req, server); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(ioDeadline)) //nolint:errcheck // the read reports it
	buf := make([]byte, 1500)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply from %v: %v", server, err)
	}
	return buf[:n], ap(t, from)
}

// Hand encoding, independent of pion's encoder (RFC 8489 §5, §14).
const magicCookie = 0x2112A442

func attr(typ uint16, value []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func addrValue(a netip.AddrPort, xor bool) []byte {
	port, ip := a.Port(), a.Addr().As4()
	if xor {
		port ^= magicCookie >> 16
		c := binary.BigEndian.AppendUint32(nil, magicCookie)
		for i := range ip {
			ip[i] ^= c[i]
		}
	}
	b := []byte{0, 1} // reserved, family IPv4
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, ip[:]...)
}

// message builds a STUN message with a FINGERPRINT (RFC 8489 §14.7).
func message(typ uint16, tid [12]byte, attrs ...[]byte) []byte {
	var body []byte
	for _, a := range attrs {
		body = append(body, a...)
	}
	hdr := func(bodyLen int) []byte {
		h := binary.BigEndian.AppendUint16(nil, typ)
		h = binary.BigEndian.AppendUint16(h, uint16(bodyLen))
		h = binary.BigEndian.AppendUint32(h, magicCookie)
		return append(h, tid[:]...)
	}
	msg := append(hdr(len(body)+8), body...)
	fp := crc32.ChecksumIEEE(msg) ^ 0x5354554e
	return append(msg, attr(0x8028, binary.BigEndian.AppendUint32(nil, fp))...)
}

func TestBindingResponseBytes(t *testing.T) {
	conns := fourConns(t)
	serve(t, conns)
	client := listen(t, "127.0.0.1:0")
	tid := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	req := message(0x0001, tid)
	got, from := exchange(t, client, conns.Primary.LocalAddr(), req)

	me := ap(t, client.LocalAddr())
	primary, other := ap(t, conns.Primary.LocalAddr()), ap(t, conns.Alternate.LocalAddr())
	want := message(0x0101, tid,
		attr(0x0020, addrValue(me, true)),       // XOR-MAPPED-ADDRESS
		attr(0x0001, addrValue(me, false)),      // MAPPED-ADDRESS
		attr(0x802b, addrValue(primary, false)), // RESPONSE-ORIGIN
		attr(0x802c, addrValue(other, false)),   // OTHER-ADDRESS
		attr(0x8022, []byte(software)),          // SOFTWARE
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("response bytes\n got %x\nwant %x", got, want)
	}
	if from != primary {
		t.Fatalf("reply came from %v, want %v", from, primary)
	}
}

// TestRFC5780Table1 sends a request to each of the four sockets with each
// CHANGE-REQUEST and checks where the answer comes from, RESPONSE-ORIGIN
// and OTHER-ADDRESS against RFC 5780 §6.1 Table 1: the source is Da or Ca
// and Dp or Cp as the flags say, and OTHER-ADDRESS is always Ca:Cp, the
// other IP and port than the ones the request was sent to.
func TestRFC5780Table1(t *testing.T) {
	conns := fourConns(t)
	serve(t, conns)
	client := listen(t, "127.0.0.1:0")
	me := ap(t, client.LocalAddr())
	grid := [4]net.PacketConn{conns.Primary, conns.AltPort, conns.AltIP, conns.Alternate}
	names := [4]string{"primary", "alt-port", "alt-IP", "alternate"}
	flags := []struct {
		name  string
		value byte
		flip  int
	}{
		{"none", 0, 0},
		{"change IP", changeIP, otherIP},
		{"change port", changePort, otherPort},
		{"change IP and port", changeIP | changePort, otherIP | otherPort},
	}
	for to := range grid {
		for _, f := range flags {
			t.Run(names[to]+"/"+f.name, func(t *testing.T) {
				req := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
					stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, f.value}}, stun.Fingerprint)
				raw, from := exchange(t, client, grid[to].LocalAddr(), req.Raw)
				wantFrom := ap(t, grid[to^f.flip].LocalAddr())
				wantOther := ap(t, grid[to^(otherIP|otherPort)].LocalAddr())
				if from != wantFrom {
					t.Fatalf("reply came from %v, want %v", from, wantFrom)
				}
				resp := &stun.Message{Raw: raw}
				if err := resp.Decode(); err != nil {
					t.Fatal(err)
				}
				if resp.Type != stun.BindingSuccess || resp.TransactionID != req.TransactionID {
					t.Fatalf("response %v, transaction %x; want success for %x", resp.Type, resp.TransactionID, req.TransactionID)
				}
				var xor stun.XORMappedAddress
				var origin stun.ResponseOrigin
				var oa stun.OtherAddress
				if err := resp.Check(stun.Fingerprint); err != nil {
					t.Fatal(err)
				}
				if err := xor.GetFrom(resp); err != nil || xor.String() != me.String() {
					t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want %v", xor, err, me)
				}
				if err := origin.GetFrom(resp); err != nil || origin.String() != wantFrom.String() {
					t.Fatalf("RESPONSE-ORIGIN %v (%v), want %v", origin, err, wantFrom)
				}
				if err := oa.GetFrom(resp); err != nil || oa.String() != wantOther.String() {
					t.Fatalf("OTHER-ADDRESS %v (%v), want %v", oa, err, wantOther)
				}
			})
		}
	}
}

// TestChangeRequestWithoutAlternate: a server with one address answers
// CHANGE-REQUEST of any value, no change included, with 420 (RFC 5780 §6).
func TestChangeRequestWithoutAlternate(t *testing.T) {
	primary := listen(t, "127.0.0.1:0")
	_, cnt := serve(t, Conns{Primary: primary})
	client := listen(t, "127.0.0.1:0")
	for _, flags := range []byte{0, changePort, changeIP, changeIP | changePort} {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
			stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}})
		raw, _ := exchange(t, client, primary.LocalAddr(), req.Raw)
		checkUnknownAttribute(t, raw, req.TransactionID, stun.AttrChangeRequest)
	}
	// Without an alternate, a plain request gets no OTHER-ADDRESS.
	plain := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	raw, _ := exchange(t, client, primary.LocalAddr(), plain.Raw)
	resp := &stun.Message{Raw: raw}
	if err := resp.Decode(); err != nil || resp.Contains(stun.AttrOtherAddress) {
		t.Fatalf("plain response: %v, OTHER-ADDRESS present: %v", err, resp.Contains(stun.AttrOtherAddress))
	}
	// A result is counted just after its reply is sent: poll.
	eventually(t, func() bool { return cnt.get(ResultChangeUnsupported) == 4 && cnt.get(ResultOK) == 1 }, "want four 420 and one ok counted")
}

// checkUnknownAttribute checks that raw is a 420 error response to
// transaction tid listing want in UNKNOWN-ATTRIBUTES (RFC 5389 §7.3.1).
func checkUnknownAttribute(t *testing.T, raw []byte, tid [stun.TransactionIDSize]byte, want ...stun.AttrType) {
	t.Helper()
	resp := &stun.Message{Raw: raw}
	if err := resp.Decode(); err != nil {
		t.Fatalf("response %x: %v", raw, err)
	}
	if resp.Type != stun.BindingError || resp.TransactionID != tid {
		t.Fatalf("response %v for %x, want a Binding error response for %x", resp.Type, resp.TransactionID, tid)
	}
	if err := stun.Fingerprint.Check(resp); err != nil {
		t.Fatalf("FINGERPRINT: %v", err)
	}
	var code stun.ErrorCodeAttribute
	var unknown stun.UnknownAttributes
	if err := code.GetFrom(resp); err != nil || code.Code != stun.CodeUnknownAttribute {
		t.Fatalf("ERROR-CODE %v (%v), want 420", code, err)
	}
	if err := unknown.GetFrom(resp); err != nil || !slices.Equal(unknown, want) {
		t.Fatalf("UNKNOWN-ATTRIBUTES %v (%v), want %v", unknown, err, want)
	}
}

func TestGarbageDroppedAndCounted(t *testing.T) {
	primary := listen(t, "127.0.0.1:0")
	_, cnt := serve(t, Conns{Primary: primary})
	client := listen(t, "127.0.0.1:0")
	valid := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	truncated := append([]byte(nil), valid.Raw...)
	binary.BigEndian.PutUint16(truncated[2:4], 100) // claims 100 bytes of attributes
	badFingerprint := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	badFingerprint.Raw[len(badFingerprint.Raw)-1] ^= 0xff
	indication := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))

	tests := []struct {
		name   string
		pkt    []byte
		result string
	}{
		{"text", []byte("GET / HTTP/1.1\r\n\r\n"), ResultGarbage},
		{"empty", []byte{}, ResultGarbage},
		{"short header", valid.Raw[:12], ResultGarbage},
		{"truncated body", truncated, ResultMalformed},
		{"wrong fingerprint", badFingerprint.Raw, ResultMalformed},
		{"indication", indication.Raw, ResultIgnored},
		{"classic RFC 3489", classicRequest, ResultClassic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cnt.get(tt.result)
			if _, err := client.WriteTo(tt.pkt, primary.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			// The next reply must answer the valid request sent after the
			// bad packet: nothing was sent for the bad one, and the server
			// is still alive.
			raw, _ := exchange(t, client, primary.LocalAddr(), valid.Raw)
			resp := &stun.Message{Raw: raw}
			if err := resp.Decode(); err != nil || resp.TransactionID != valid.TransactionID {
				t.Fatalf("reply %x (%v) does not answer the valid request", raw, err)
			}
			if got := cnt.get(tt.result); got != before+1 {
				t.Fatalf("%s count %d, want %d", tt.result, got, before+1)
			}
		})
	}
}

// classicRequest is an RFC 3489 Binding request as the stun-client package's
// client (Vovida's) sends it: no magic cookie, a 128-bit transaction ID and
// a CHANGE-REQUEST with no flags.
var classicRequest = []byte{
	0x00, 0x01, 0x00, 0x08, 0x01, 0x1c, 0x1a, 0x50, 0xc2, 0x1c, 0xba, 0x15, 0xda, 0x60, 0x06, 0x2e,
	0x5d, 0x18, 0xa3, 0x09, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
}

func TestRateLimitPerSource(t *testing.T) {
	primary := listen(t, "127.0.0.1:0")
	_, cnt := serve(t, Conns{Primary: primary})
	client := listen(t, "127.0.0.1:0")
	// Far more than a burst plus what refills while sending, whatever the
	// machine's speed: 200 packets need 8 s at the sustained rate.
	const flood = 200
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	for range flood {
		if _, err := client.WriteTo(req.Raw, primary.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() bool { return cnt.get(ResultRateLimited) > 0 && cnt.get(ResultOK) >= sourceBurst },
		"after %d requests from one source: want at least %d ok and some rate limited", flood, sourceBurst)
}

// eventually polls cond until it holds or ioDeadline passes.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	wait.For(t, ioDeadline, fmt.Sprintf(format, args...), cond)
}
