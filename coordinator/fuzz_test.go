package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The seed corpora in testdata/fuzz were built with json.Marshal of wire's
// types: registrations with a well-formed token this coordinator never
// issued, and one stream message of each type a node sends.

// maxNodeErrorText bounds the error text one message from a node can cause:
// it goes back to the node and, before authentication, into the log.
const maxNodeErrorText = 1024

// FuzzStreamMessage decodes arbitrary bytes as a node's stream message and
// applies the checks the coordinator makes before acting on one. A
// refusal's text is bounded whatever the message holds; endpoints that pass
// are usable addresses with a short kind, no more than a node may report,
// and a NAT description peers understand.
func FuzzStreamMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			var bad errMalformed
			if !errors.As(err, &bad) {
				t.Fatalf("decode error %v is not errMalformed", err)
			}
			if len(err.Error()) > maxNodeErrorText {
				t.Fatalf("a %d-byte message gave a %d-byte error", len(b), len(err.Error()))
			}
			return
		}
		if err := validEndpoints(m.Endpoints, m.NAT); err != nil {
			if len(err.Error()) > maxNodeErrorText {
				t.Fatalf("%d endpoints gave a %d-byte error", len(m.Endpoints), len(err.Error()))
			}
		} else {
			if len(m.Endpoints) > wire.MaxEndpoints {
				t.Fatalf("accepted %d endpoints, more than %d", len(m.Endpoints), wire.MaxEndpoints)
			}
			for _, e := range m.Endpoints {
				if !e.Addr.IsValid() || e.Addr.Port() == 0 || e.Addr.Addr().IsUnspecified() || e.Kind == "" || len(e.Kind) > maxAttrLen {
					t.Fatalf("accepted endpoint %+v", e)
				}
			}
			if m.NAT != nil && (!m.NAT.Mapping.Known() || !m.NAT.PortAlloc.Known()) {
				t.Fatalf("accepted NAT %+v", *m.NAT)
			}
		}
		relay, err := parseRelay(m.Relay)
		switch {
		case err != nil && len(err.Error()) > maxNodeErrorText:
			t.Fatalf("a %d-byte relay gave a %d-byte error", len(m.Relay), len(err.Error()))
		case err == nil && relay.IsValid():
			a := relay.Addr()
			if relay.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("accepted relay %q as %v", m.Relay, relay)
			}
		case err == nil && m.Relay != "":
			t.Fatalf("relay %q neither refused nor accepted", m.Relay)
		}
	})
}

// FuzzRegister posts arbitrary bodies to the registration handler of a
// coordinator that issued no token. Nothing registers; every answer is a
// JSON refusal with a code that matches its status and a reason; none is an
// internal error. A body that decodes as a registration is posted a second
// time with a fresh challenge and a valid proof (of a key the test holds),
// so that the checks past the proof, the token's, are fuzzed too.
func FuzzRegister(f *testing.F) {
	cfg := config.DefaultCoordinator()
	cfg.DataDir = f.TempDir()
	s, err := New(Options{Config: cfg})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// Every input fails, from one address: the checks past the budget
	// are what is fuzzed.
	UnlimitFailedRegistrations(s)
	prover, err := crypto.NewPrivateKey()
	if err != nil {
		f.Fatal(err)
	}
	statusOf := map[string][]int{
		wire.ErrCodeBadRequest:       {http.StatusBadRequest, http.StatusRequestEntityTooLarge},
		wire.ErrCodeTokenUnknown:     {http.StatusUnauthorized},
		wire.ErrCodeUnauthorized:     {http.StatusUnauthorized},
		wire.ErrCodeChallengeExpired: {http.StatusUnauthorized},
	}
	post := func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		s.handleRegister(rec, httptest.NewRequest(http.MethodPost, wire.PathRegister, bytes.NewReader(body)))
		var fail wire.ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &fail); err != nil {
			t.Fatalf("answer %d %q is not JSON: %v", rec.Code, rec.Body, err)
		}
		ok := false
		for _, st := range statusOf[fail.Code] {
			ok = ok || st == rec.Code
		}
		if !ok || fail.Error == "" {
			t.Fatalf("answer %d %+v to %q", rec.Code, fail, body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("answer with content type %q", ct)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		post(t, body)
		var req wire.RegisterRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		checkLabel(t, req.Name)
		req.PublicKey, req.Challenge = prover.Public(), s.challenges.issue(time.Now())
		if req.Proof, err = crypto.Proof(prover, s.key.Public(), wire.RegisterProofLabel, req.Challenge); err != nil {
			t.Fatal(err)
		}
		proven, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		post(t, proven)
	})
}

// checkLabel checks the name the coordinator makes of a requested one: a
// DNS label of lower-case letters, digits and inner hyphens, 1-63
// characters, that maps to itself.
func checkLabel(t *testing.T, name string) {
	t.Helper()
	l := dnsLabel(name)
	if l == "" || len(l) > maxLabel || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") ||
		strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		t.Fatalf("dnsLabel(%q) = %q, not a DNS label", name, l)
	}
	if again := dnsLabel(l); again != l {
		t.Fatalf("dnsLabel(%q) = %q, but dnsLabel(%q) = %q", name, l, l, again)
	}
}
