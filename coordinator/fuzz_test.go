package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/config"
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
		if validRelay(m.Relay) {
			if _, port, err := net.SplitHostPort(m.Relay); err != nil || port == "" || port == "0" {
				t.Fatalf("accepted relay %q", m.Relay)
			}
		}
	})
}

// FuzzRegister posts arbitrary bodies to the registration handler of a
// coordinator that issued no token. Nothing registers; every answer is a
// JSON refusal with a code that matches its status and a reason; none is an
// internal error.
func FuzzRegister(f *testing.F) {
	cfg := config.DefaultCoordinator()
	cfg.DataDir = f.TempDir()
	s, err := New(Options{Config: cfg})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	statusOf := map[string][]int{
		wire.ErrCodeBadRequest:   {http.StatusBadRequest, http.StatusRequestEntityTooLarge},
		wire.ErrCodeTokenUnknown: {http.StatusUnauthorized},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
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
		var req wire.RegisterRequest
		if json.Unmarshal(body, &req) == nil {
			checkLabel(t, req.Name)
		}
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
