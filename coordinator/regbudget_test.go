package coordinator

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// budgetServer is a coordinator whose log goes to a buffer, with a valid
// reusable token and a bogus one.
func budgetServer(t *testing.T) (s *Server, logs *bytes.Buffer, valid, bogus string) {
	t.Helper()
	cfg := config.DefaultCoordinator()
	cfg.DataDir = t.TempDir()
	cfg.PublicURL = "https://198.18.0.1:8443"
	logs = new(bytes.Buffer)
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tok, err := s.CreateToken(t.Context(), TokenOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	guess := tok
	guess.Secret = "guessed-secret"
	return s, logs, tok.String(), guess.String()
}

// postFrom posts a proven registration of a new key with token, from src.
func postFrom(t *testing.T, s *Server, src, token string) *httptest.ResponseRecorder {
	t.Helper()
	priv, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ch := s.challenges.issue(time.Now())
	proof, err := crypto.Proof(priv, s.key.Public(), wire.RegisterProofLabel, ch)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.RegisterRequest{Token: token, PublicKey: priv.Public(), Name: "n", Challenge: ch, Proof: proof})
	req := httptest.NewRequest(http.MethodPost, wire.PathRegister, bytes.NewReader(body))
	req.RemoteAddr = src
	rec := httptest.NewRecorder()
	s.handleRegister(rec, req)
	return rec
}

func codeOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var fail wire.ErrorResponse
	json.Unmarshal(rec.Body.Bytes(), &fail) //nolint:errcheck // a 200 has no code
	return fail.Code
}

// A source that keeps failing to register is refused at once, with 429
// rate_limited and when to retry, before anything is checked: even a
// valid token from it waits. Other sources are untouched, a spray over
// one IPv6 /64 is one source, and successes cost nothing.
func TestFailedRegistrationsAreBoundedPerSource(t *testing.T) {
	t.Parallel()
	s, logs, valid, bogus := budgetServer(t)
	const attacker, neighbour = "198.18.0.66:40000", "198.18.0.67:40000"
	for i := range failedRegisterBurst {
		if rec := postFrom(t, s, attacker, bogus); rec.Code != http.StatusUnauthorized || codeOf(t, rec) != wire.ErrCodeTokenUnknown {
			t.Fatalf("bogus registration %d: %d %s, want 401 token_unknown", i, rec.Code, codeOf(t, rec))
		}
	}
	const overBudget = 100
	for i := range overBudget {
		token := bogus
		if i == 0 {
			token = valid
		}
		rec := postFrom(t, s, attacker, token)
		if rec.Code != http.StatusTooManyRequests || codeOf(t, rec) != wire.ErrCodeRateLimited {
			t.Fatalf("registration %d past the budget: %d %s, want 429 rate_limited", i, rec.Code, codeOf(t, rec))
		}
		if i == 0 {
			var fail wire.ErrorResponse
			json.Unmarshal(rec.Body.Bytes(), &fail) //nolint:errcheck // checked above
			if ra := rec.Header().Get("Retry-After"); ra != "6" || !strings.Contains(fail.Error, "198.18.0.66/32") {
				t.Fatalf("refusal says Retry-After %q and %q; want 6 and the source", ra, fail.Error)
			}
		}
	}
	if n, _ := s.hub.counts(); n != 0 {
		t.Fatalf("%d nodes registered from a source past its budget", n)
	}
	if rec := postFrom(t, s, neighbour, valid); rec.Code != http.StatusOK {
		t.Fatalf("another source: %d %s, want 200", rec.Code, codeOf(t, rec))
	}
	// The refusals are logged at a bounded rate.
	if n := strings.Count(logs.String(), "too many failed registrations"); n == 0 || n > logBurst+1 {
		t.Fatalf("%d log lines for %d refusals, want between 1 and %d", n, overBudget, logBurst+1)
	}

	// One host spraying its /64: one budget.
	prefix := netip.MustParsePrefix("2001:db8:1:2::/64").Addr().As16()
	codes := map[int]int{}
	for i := range 2 * failedRegisterBurst {
		a := prefix
		a[15], a[14] = byte(i), byte(i>>8)
		codes[postFrom(t, s, netip.AddrPortFrom(netip.AddrFrom16(a), 40000).String(), bogus).Code]++
	}
	if codes[http.StatusUnauthorized] != failedRegisterBurst || codes[http.StatusTooManyRequests] != failedRegisterBurst {
		t.Fatalf("%d bogus registrations from one /64: %v, want %d refused as unknown, the rest rate limited", 2*failedRegisterBurst, codes, failedRegisterBurst)
	}
	if rec := postFrom(t, s, "[2001:db8:1:3::1]:40000", valid); rec.Code != http.StatusOK {
		t.Fatalf("the neighbouring /64: %d %s, want 200", rec.Code, codeOf(t, rec))
	}

	// Many nodes behind one address register, however many.
	for i := range 2 * failedRegisterBurst {
		if rec := postFrom(t, s, "198.18.0.88:40000", valid); rec.Code != http.StatusOK {
			t.Fatalf("registration %d from a busy source: %d %s, want 200", i, rec.Code, codeOf(t, rec))
		}
	}
}
