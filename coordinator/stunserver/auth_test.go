package stunserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// users is an Authenticator with fixed passwords that records observations.
type users struct {
	pass     map[string]string
	observed map[string]netip.AddrPort
}

func (u *users) Password(name string) (string, bool) {
	p, ok := u.pass[name]
	return p, ok
}

func (u *users) Observed(name string, src netip.AddrPort) { u.observed[name] = src }

// TestAuthenticatedBinding checks short-term credentials (RFC 8489 §9.1.3):
// a correctly signed request gets a success signed with the same key and is
// recorded as evidence of where its user is; a missing, unknown or wrong
// credential gets 400 or 401 and records nothing; unsigned requests are
// answered as before.
func TestAuthenticatedBinding(t *testing.T) {
	client := netip.MustParseAddrPort("198.51.100.7:40000")
	good := stun.NewShortTermIntegrity("secret")
	wrong := stun.NewShortTermIntegrity("guess")
	alice := stun.NewUsername("alice")
	tests := []struct {
		name     string
		pkt      []byte
		result   string
		code     stun.ErrorCode // for an error response
		observed bool
	}{
		{name: "signed", pkt: request(alice, good), result: ResultOK, observed: true},
		{name: "signed with FINGERPRINT", pkt: request(alice, good, stun.Fingerprint), result: ResultOK, observed: true},
		{name: "signed, change request", pkt: request(alice, attribute(stun.AttrChangeRequest, []byte{0, 0, 0, changePort}), good), result: ResultOK, observed: true},
		{name: "unsigned", pkt: request(), result: ResultOK},
		{name: "wrong password", pkt: request(alice, wrong), result: ResultUnauthorized, code: stun.CodeUnauthorized},
		{name: "unknown user", pkt: request(stun.NewUsername("mallory"), good), result: ResultUnauthorized, code: stun.CodeUnauthorized},
		{name: "USERNAME alone", pkt: request(alice), result: ResultBadRequest, code: stun.CodeBadRequest},
		{name: "MESSAGE-INTEGRITY alone", pkt: request(good), result: ResultBadRequest, code: stun.CodeBadRequest},
		// RFC 8489 §14.5: what follows MESSAGE-INTEGRITY (but FINGERPRINT)
		// is ignored, not a reason to refuse.
		{name: "attribute after MESSAGE-INTEGRITY", pkt: request(alice, good, stun.NewSoftware("x")), result: ResultOK, observed: true},
		{name: "tampered after signing", pkt: patched(request(alice, good), func(b []byte) []byte { b[len(b)-25] ^= 1; return b }), result: ResultUnauthorized, code: stun.CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &users{pass: map[string]string{"alice": "secret"}, observed: map[string]netip.AddrPort{}}
			s := New(Options{Software: software, Auth: u})
			resp, _, result, _ := s.respond(tt.pkt, client, syntheticGrid(true), 0, time.Unix(1000, 0))
			if result != tt.result {
				t.Fatalf("result %q, want %q", result, tt.result)
			}
			m := &stun.Message{Raw: resp}
			if err := m.Decode(); err != nil {
				t.Fatalf("response %x: %v", resp, err)
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Errorf("response FINGERPRINT: %v", err)
			}
			if tt.code != 0 {
				var ec stun.ErrorCodeAttribute
				if err := ec.GetFrom(m); err != nil || ec.Code != tt.code || m.Type != stun.BindingError {
					t.Fatalf("response %v with error %v (%v), want %d", m.Type, ec.Code, err, tt.code)
				}
				if m.Contains(stun.AttrMessageIntegrity) {
					t.Error("an error to an unauthenticated request carries MESSAGE-INTEGRITY")
				}
			}
			if tt.observed {
				if err := good.Check(m); err != nil {
					t.Errorf("success not signed with the request's key: %v", err)
				}
			} else if m.Contains(stun.AttrMessageIntegrity) {
				t.Error("a response carries MESSAGE-INTEGRITY the request did not ask for")
			}
			if got, ok := u.observed["alice"]; ok != tt.observed || (ok && got != client) {
				t.Errorf("observed %v (%v), want %v at %v", got, ok, tt.observed, client)
			}
		})
	}
}

// Without an Authenticator, credentials are attributes the server does not
// implement: 420, as before.
func TestCredentialsWithoutAuthenticator(t *testing.T) {
	s := New(Options{})
	pkt := request(stun.NewUsername("alice"), stun.NewShortTermIntegrity("secret"))
	_, _, result, _ := s.respond(pkt, netip.MustParseAddrPort("198.51.100.7:40000"), syntheticGrid(false), 0, time.Unix(1000, 0))
	if result != ResultUnknownAttribute {
		t.Fatalf("result %q, want %q", result, ResultUnknownAttribute)
	}
}
