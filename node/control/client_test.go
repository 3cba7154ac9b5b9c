package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestRegister(t *testing.T) {
	refusal := func(code string) string {
		b, _ := json.Marshal(wire.ErrorResponse{Code: code, Error: "because " + code})
		return string(b)
	}
	tests := []struct {
		name      string
		status    int
		body      string
		wantCode  string // a RejectedError's code; empty for success
		permanent bool
	}{
		{"token unknown", http.StatusUnauthorized, refusal(wire.ErrCodeTokenUnknown), wire.ErrCodeTokenUnknown, true},
		{"token expired", http.StatusUnauthorized, refusal(wire.ErrCodeTokenExpired), wire.ErrCodeTokenExpired, true},
		{"token used", http.StatusConflict, refusal(wire.ErrCodeTokenUsed), wire.ErrCodeTokenUsed, true},
		{"token revoked", http.StatusUnauthorized, refusal(wire.ErrCodeTokenRevoked), wire.ErrCodeTokenRevoked, true},
		{"node removed", http.StatusForbidden, refusal(wire.ErrCodeNodeRemoved), wire.ErrCodeNodeRemoved, true},
		{"bad request", http.StatusBadRequest, refusal(wire.ErrCodeBadRequest), wire.ErrCodeBadRequest, true},
		{"unauthorized", http.StatusUnauthorized, refusal(wire.ErrCodeUnauthorized), wire.ErrCodeUnauthorized, true},
		{"pool exhausted", http.StatusServiceUnavailable, refusal(wire.ErrCodePoolFull), wire.ErrCodePoolFull, true},
		{"internal", http.StatusInternalServerError, refusal(wire.ErrCodeInternal), wire.ErrCodeInternal, false},
		{"rate limited", http.StatusTooManyRequests, refusal(wire.ErrCodeRateLimited), wire.ErrCodeRateLimited, false},
		{"unknown code", http.StatusTeapot, refusal("from_the_future"), "from_the_future", false},
		{"not JSON", http.StatusBadGateway, "<html>bad gateway</html>", wire.ErrCodeInternal, false},
	}
	coordPriv := newKey(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, pin := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == wire.PathRegisterChallenge {
					json.NewEncoder(w).Encode(wire.RegisterChallenge{Challenge: []byte("0123456789abcdef"), CoordinatorKey: coordPriv.Public()})
					return
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			_, err := Register(context.Background(), NewHTTPClient(pin), crypto.Coordinator{URL: srv.URL}, "tok", newKey(t), "n")
			var re *RejectedError
			if !errors.As(err, &re) {
				t.Fatalf("Register = %v, want a RejectedError", err)
			}
			if re.Status != tt.status || re.Code != tt.wantCode {
				t.Errorf("refusal %d %q, want %d %q", re.Status, re.Code, tt.status, tt.wantCode)
			}
			if re.Reason == "" {
				t.Error("refusal without a reason")
			}
			if got := IsPermanent(fmt.Errorf("joining: %w", err)); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
		})
	}
}

// fakeRegistrar is a coordinator's registration endpoint: it issues a
// challenge and answers a registration whose proof holds with answer.
func fakeRegistrar(t *testing.T, coordPriv crypto.PrivateKey, answer wire.RegisterResponse) (url, pin string) {
	t.Helper()
	challenge := []byte("a challenge of at least sixteen bytes")
	srv, pin := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == wire.PathRegisterChallenge {
			json.NewEncoder(w).Encode(wire.RegisterChallenge{Challenge: challenge, CoordinatorKey: coordPriv.Public()})
			return
		}
		var req wire.RegisterRequest
		switch {
		case r.Method != http.MethodPost || r.URL.Path != wire.PathRegister:
			t.Errorf("request %s %s, want POST %s", r.Method, r.URL.Path, wire.PathRegister)
		case r.Header.Get("Content-Type") != "application/json":
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		case json.NewDecoder(r.Body).Decode(&req) != nil:
			t.Error("request body is not a RegisterRequest")
		case req.Token != "mntok1_x" || req.Name != "a" || string(req.Challenge) != string(challenge):
			t.Errorf("request %+v", req)
		case !crypto.VerifyProof(coordPriv, req.PublicKey, wire.RegisterProofLabel, req.Challenge, req.Proof):
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(wire.ErrorResponse{Code: wire.ErrCodeUnauthorized, Error: "proof does not match"})
			return
		}
		json.NewEncoder(w).Encode(answer)
	}))
	return srv.URL, pin
}

func TestRegisterSuccess(t *testing.T) {
	node := newKey(t)
	coordPriv := newKey(t)
	want := wire.RegisterResponse{
		Self:           wire.Node{Name: "a", PublicKey: node.Public(), Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1")}},
		CoordinatorKey: coordPriv.Public(),
		NetworkV4:      netip.MustParsePrefix("100.64.0.0/10"),
	}
	url, pin := fakeRegistrar(t, coordPriv, want)
	// A trailing slash on the token's URL must not double the path's.
	got, err := Register(context.Background(), NewHTTPClient(pin), crypto.Coordinator{URL: url + "/"}, "mntok1_x", node, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Self.Name != "a" || got.Self.PublicKey != node.Public() || got.CoordinatorKey != coordPriv.Public() || got.NetworkV4 != want.NetworkV4 {
		t.Fatalf("Register = %+v, want %+v", got, want)
	}
}

// A registration answered with another coordinator key than the one the
// proof was made for is refused: the stream would prove to the wrong key.
func TestRegisterKeyMismatch(t *testing.T) {
	coordPriv := newKey(t)
	url, pin := fakeRegistrar(t, coordPriv, wire.RegisterResponse{CoordinatorKey: newKey(t).Public()})
	_, err := Register(context.Background(), NewHTTPClient(pin), crypto.Coordinator{URL: url}, "mntok1_x", newKey(t), "a")
	if err == nil || !strings.Contains(err.Error(), "differs from") || IsPermanent(err) {
		t.Fatalf("Register = %v, want a retryable key mismatch", err)
	}
}

// A coordinator older than the node has no challenge: the node says so,
// and keeps retrying (the coordinator may be upgraded).
func TestRegisterOlderCoordinator(t *testing.T) {
	srv, pin := newTLSServer(t, http.NotFoundHandler())
	_, err := Register(context.Background(), NewHTTPClient(pin), crypto.Coordinator{URL: srv.URL}, "tok", newKey(t), "n")
	if err == nil || !strings.Contains(err.Error(), "older than this node") || IsPermanent(err) {
		t.Fatalf("Register = %v, want a retryable error naming an older coordinator", err)
	}
}

func TestRegisterBadAnswer(t *testing.T) {
	srv, pin := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "{not json")
	}))
	_, err := Register(context.Background(), NewHTTPClient(pin), crypto.Coordinator{URL: srv.URL}, "tok", newKey(t), "n")
	if err == nil || !strings.Contains(err.Error(), "bad answer") || IsPermanent(err) {
		t.Fatalf("Register = %v, want a retryable bad answer error", err)
	}
}

func TestBadPinRefused(t *testing.T) {
	co := newCoord(t, func(*coordConn, int) { t.Error("a stream got through a wrong pin") })
	wrong := crypto.CertFingerprint([]byte("another certificate"))
	const want = "does not match the token's pin"

	_, err := Register(context.Background(), NewHTTPClient(wrong), crypto.Coordinator{URL: co.srv.URL}, "tok", newKey(t), "n")
	if err == nil || !strings.Contains(err.Error(), want) || IsPermanent(err) {
		t.Fatalf("Register with a wrong pin = %v, want a pin mismatch", err)
	}

	s := co.stream(t)
	s.Coordinators[0].Pin = wrong
	s.Backoff = Backoff{Min: time.Hour}
	h := newRecorder()
	run(t, s, h)
	if e := h.next(t, "disconnect"); e.err == nil || !strings.Contains(e.err.Error(), want) {
		t.Fatalf("stream with a wrong pin: %v, want a pin mismatch", e.err)
	}
	if s.Connected() {
		t.Fatal("connected through a wrong pin")
	}
}
