package stunserver

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// syntheticGrid is a grid with addresses and no sockets, for respond, which
// does no I/O. With alternate it has RFC 5780's four addresses.
func syntheticGrid(alternate bool) *grid {
	g := &grid{addrs: [4]netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:3478")}}
	if alternate {
		g.alternate = true
		g.addrs[otherPort] = netip.MustParseAddrPort("192.0.2.1:3479")
		g.addrs[otherIP] = netip.MustParseAddrPort("192.0.2.2:3478")
		g.addrs[otherIP|otherPort] = netip.MustParseAddrPort("192.0.2.2:3479")
	}
	return g
}

// request is a Binding request built by pion with setters added.
func request(setters ...stun.Setter) []byte {
	return stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...).Raw
}

func attribute(t stun.AttrType, value []byte) stun.Setter {
	return stun.RawAttribute{Type: t, Value: value}
}

// patched returns a copy of pkt with f applied.
func patched(pkt []byte, f func([]byte) []byte) []byte { return f(slices.Clone(pkt)) }

// TestConformance checks the server's answer to crafted datagrams against
// RFC 5389 and RFC 5780: what gets a success response, what gets 420 with
// which UNKNOWN-ATTRIBUTES, and what is dropped without a word.
func TestConformance(t *testing.T) {
	client := netip.MustParseAddrPort("198.51.100.7:40000")
	var manyUnknown []stun.Setter
	var firstUnknown []stun.AttrType
	for i := range 2 * maxUnknown {
		typ := stun.AttrType(0x7000 + i)
		manyUnknown = append(manyUnknown, attribute(typ, nil))
		if i < maxUnknown {
			firstUnknown = append(firstUnknown, typ)
		}
	}
	noChange := attribute(stun.AttrChangeRequest, []byte{0, 0, 0, 0})
	changeBoth := attribute(stun.AttrChangeRequest, []byte{0, 0, 0, changeIP | changePort})
	padding := attribute(stun.AttrPadding, make([]byte, 1500))
	responsePort := attribute(stun.AttrResponsePort, []byte{0x30, 0x39, 0, 0})
	plain := request()

	tests := []struct {
		name      string
		pkt       []byte
		alternate bool
		result    string
		unknown   []stun.AttrType // for a 420
		via       int             // for a success
	}{
		{name: "plain Binding request", pkt: plain, result: ResultOK},
		{name: "with FINGERPRINT and SOFTWARE", pkt: request(stun.NewSoftware("client"), stun.Fingerprint), result: ResultOK},
		{name: "unknown comprehension-optional attribute is ignored", pkt: request(attribute(0x8033, []byte("x"))), result: ResultOK},
		{name: "unknown comprehension-required attribute", pkt: request(attribute(0x0033, []byte("x"))),
			result: ResultUnknownAttribute, unknown: []stun.AttrType{0x0033}},
		{name: "each unknown listed once, in order", pkt: request(attribute(0x7fff, nil), attribute(0x0000, nil), attribute(0x7fff, nil), attribute(0x0033, nil)),
			result: ResultUnknownAttribute, unknown: []stun.AttrType{0x7fff, 0x0000, 0x0033}},
		{name: "at most maxUnknown listed", pkt: request(manyUnknown...), result: ResultUnknownAttribute, unknown: firstUnknown},
		{name: "PADDING is refused, not echoed", pkt: request(padding), alternate: true,
			result: ResultUnknownAttribute, unknown: []stun.AttrType{stun.AttrPadding}},
		{name: "RESPONSE-PORT is refused", pkt: request(responsePort), alternate: true,
			result: ResultUnknownAttribute, unknown: []stun.AttrType{stun.AttrResponsePort}},
		{name: "RESPONSE-PORT with PADDING", pkt: request(responsePort, padding), alternate: true,
			result: ResultUnknownAttribute, unknown: []stun.AttrType{stun.AttrResponsePort, stun.AttrPadding}},
		{name: "CHANGE-REQUEST without flags, no alternate", pkt: request(noChange),
			result: ResultChangeUnsupported, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		{name: "CHANGE-REQUEST, no alternate", pkt: request(changeBoth, attribute(0x0033, nil)),
			result: ResultChangeUnsupported, unknown: []stun.AttrType{stun.AttrChangeRequest, 0x0033}},
		{name: "CHANGE-REQUEST with an alternate", pkt: request(changeBoth), alternate: true, result: ResultOK, via: otherIP | otherPort},
		{name: "CHANGE-REQUEST's unused bits are ignored", pkt: request(attribute(stun.AttrChangeRequest, []byte{0xff, 0xff, 0xff, 0xfd})), alternate: true,
			result: ResultOK, via: otherIP},
		{name: "CHANGE-REQUEST of the wrong length", pkt: request(attribute(stun.AttrChangeRequest, []byte{0, 0, 0, 0, 0, 0, 0, 6})), alternate: true,
			result: ResultMalformed},
		{name: "empty", pkt: nil, result: ResultGarbage},
		{name: "shorter than a header", pkt: plain[:19], result: ResultGarbage},
		{name: "top bit of the type set", pkt: patched(plain, func(b []byte) []byte { b[0] |= 0x80; return b }), result: ResultGarbage},
		{name: "second bit of the type set", pkt: patched(plain, func(b []byte) []byte { b[0] |= 0x40; return b }), result: ResultGarbage},
		{name: "datagram longer than its length", pkt: append(slices.Clone(plain), 0, 0, 0, 0), result: ResultMalformed},
		{name: "datagram shorter than its length", pkt: patched(plain, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], 8); return b }),
			result: ResultMalformed},
		{name: "length not a multiple of 4", pkt: patched(plain, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], 2); return append(b, 0, 0) }),
			result: ResultMalformed},
		{name: "attribute overruns the message", pkt: patched(request(attribute(0x8033, []byte("abcd"))), func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[22:24], 8)
			return b
		}), result: ResultMalformed},
		{name: "wrong FINGERPRINT", pkt: patched(request(stun.Fingerprint), func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), result: ResultMalformed},
		{name: "FINGERPRINT not last", pkt: request(stun.Fingerprint, stun.NewSoftware("x")), result: ResultMalformed},
		{name: "bad magic cookie, length wrong", pkt: patched(plain, func(b []byte) []byte { b[4] ^= 1; return append(b, 0) }), result: ResultGarbage},
		{name: "classic RFC 3489 request", pkt: classicRequest, result: ResultClassic},
		{name: "classic RFC 3489 request, no attributes", pkt: patched(plain, func(b []byte) []byte { b[4] ^= 1; return b }), result: ResultClassic},
		{name: "Binding indication", pkt: stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication)).Raw, result: ResultIgnored},
		{name: "Binding success response", pkt: stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw, result: ResultIgnored},
		{name: "another method", pkt: stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)).Raw, result: ResultIgnored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Software: software})
			const recv = 0
			resp, via, result, _ := s.respond(tt.pkt, client, syntheticGrid(tt.alternate), recv, time.Unix(1000, 0))
			if result != tt.result {
				t.Fatalf("result %q, want %q", result, tt.result)
			}
			switch {
			case tt.unknown != nil:
				checkUnknownAttribute(t, resp, [stun.TransactionIDSize]byte(tt.pkt[8:20]), tt.unknown...)
				if via != recv {
					t.Errorf("420 sent from socket %d, want the receiving %d", via, recv)
				}
				if len(tt.pkt) > headerLen+100 && len(resp) >= len(tt.pkt) {
					t.Errorf("a %d-byte request got a %d-byte response", len(tt.pkt), len(resp))
				}
			case tt.result == ResultOK:
				m := &stun.Message{Raw: resp}
				if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess || m.TransactionID != [stun.TransactionIDSize]byte(tt.pkt[8:20]) {
					t.Fatalf("response %x (%v): want a Binding success for the request", resp, err)
				}
				if via != tt.via {
					t.Errorf("sent from socket %d, want %d", via, tt.via)
				}
			case resp != nil:
				t.Fatalf("a response %x to a packet that should be dropped", resp)
			}
		})
	}
}
