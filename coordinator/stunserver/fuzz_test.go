package stunserver

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// maxResponse is the largest response the server may send: a success to an
// IPv6 client (four 20-byte address attributes) or a 420 listing maxUnknown
// attributes, with SOFTWARE, MESSAGE-INTEGRITY (for a signed request) and
// FINGERPRINT. It holds whatever the request:
// the server never sizes a response by it (PADDING is refused).
func maxResponse(software string) int {
	attr := func(value int) int { return 4 + (value+3)/4*4 }
	success := 4 * attr(20)
	refusal := attr(4+len("Unknown Attribute")) + attr(2*maxUnknown)
	return headerLen + max(success, refusal) + attr(len(software)) + attr(20) + attr(4)
}

// FuzzRespond feeds the server's request handling any datagram, from an
// IPv4 and an IPv6 client, on every socket of a server with and without an
// alternate address and an Authenticator. It must not panic; a response must be a well-formed
// answer to the request's transaction, sent from the socket RFC 5780 says,
// no larger than maxResponse.
func FuzzRespond(f *testing.F) {
	limit := maxResponse(software)
	f.Add(request(stun.NewUsername("alice"), stun.NewShortTermIntegrity("secret"), stun.Fingerprint))
	type fuzzCase struct {
		client netip.AddrPort
		auth   Authenticator
	}
	var cases []fuzzCase
	for _, client := range []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:40000"), netip.MustParseAddrPort("[2001:db8::7]:40000")} {
		for _, auth := range []Authenticator{nil, &users{pass: map[string]string{"alice": "secret"}, observed: map[string]netip.AddrPort{}}} {
			cases = append(cases, fuzzCase{client, auth})
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		in := bytes.Clone(pkt)
		for _, alternate := range []bool{false, true} {
			g := syntheticGrid(alternate)
			for recv, addr := range g.addrs {
				if !addr.IsValid() {
					continue
				}
				for _, c := range cases {
					client := c.client
					s := New(Options{Software: software, Auth: c.auth})
					resp, via, result, _ := s.respond(pkt, client, g, recv, time.Unix(1000, 0))
					if !bytes.Equal(pkt, in) {
						t.Fatal("respond modified the request")
					}
					if resp == nil {
						if result == ResultOK || result == ResultUnknownAttribute || result == ResultChangeUnsupported {
							t.Fatalf("result %q without a response", result)
						}
						continue
					}
					if len(resp) > limit {
						t.Fatalf("a %d-byte response, over the bound %d", len(resp), limit)
					}
					checkResponse(t, pkt, resp, client, g, recv, via, result)
				}
			}
		}
	})
}

// checkResponse checks that resp answers req as the server should.
func checkResponse(t *testing.T, req, resp []byte, client netip.AddrPort, g *grid, recv, via int, result string) {
	t.Helper()
	m := &stun.Message{Raw: resp}
	if err := m.Decode(); err != nil {
		t.Fatalf("response %x does not decode: %v", resp, err)
	}
	if m.TransactionID != [stun.TransactionIDSize]byte(req[8:20]) {
		t.Fatalf("response for transaction %x, request's is %x", m.TransactionID, req[8:20])
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Fatalf("response FINGERPRINT: %v", err)
	}
	switch result {
	case ResultOK:
		var xor stun.XORMappedAddress
		if m.Type != stun.BindingSuccess || xor.GetFrom(m) != nil || xor.String() != client.String() {
			t.Fatalf("success %v with XOR-MAPPED-ADDRESS %v, want %v", m.Type, xor, client)
		}
		if g.addrs[via] == (netip.AddrPort{}) {
			t.Fatalf("sent from socket %d, which the server doesn't have", via)
		}
		var other stun.OtherAddress
		if g.alternate && (other.GetFrom(m) != nil || other.String() != g.addrs[recv^(otherIP|otherPort)].String()) {
			t.Fatalf("OTHER-ADDRESS %v for a request to %v", other, g.addrs[recv])
		}
	case ResultBadRequest, ResultUnauthorized:
		var code stun.ErrorCodeAttribute
		if m.Type != stun.BindingError || code.GetFrom(m) != nil || (code.Code != stun.CodeBadRequest && code.Code != stun.CodeUnauthorized) || via != recv {
			t.Fatalf("%s response %v, code %v, sent from %d for a request to %d", result, m.Type, code, via, recv)
		}
	case ResultUnknownAttribute, ResultChangeUnsupported:
		var code stun.ErrorCodeAttribute
		var unknown stun.UnknownAttributes
		if m.Type != stun.BindingError || code.GetFrom(m) != nil || code.Code != stun.CodeUnknownAttribute ||
			unknown.GetFrom(m) != nil || len(unknown) == 0 || len(unknown) > maxUnknown || via != recv {
			t.Fatalf("420 response %v, code %v, unknown %v, sent from %d for a request to %d", m.Type, code, unknown, via, recv)
		}
	default:
		t.Fatalf("a response with result %q", result)
	}
}
