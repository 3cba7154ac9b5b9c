package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/meshnode/meshnode/policy"
)

// PolicyCheck is what checking a policy found, as 'meshnode policy check'
// says it: every error with its line and column, and the warnings.
type PolicyCheck struct {
	Valid    bool     `json:"valid"`
	Rules    int      `json:"rules"`
	Errors   []string `json:"errors,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// DraftTest is the page's test of a draft policy: may Src reach Dst
// (DST[:PORT][/PROTO]) under Text.
type DraftTest struct {
	Text string `json:"text"`
	Src  string `json:"src"`
	Dst  string `json:"dst"`
}

// readPolicy reads an action's body: the policy file's text, as the admin
// socket takes it, up to policy.MaxBytes.
func readPolicy(w http.ResponseWriter, r *http.Request) (string, error) {
	text, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxBytes))
	if err != nil {
		return "", fmt.Errorf("the policy is larger than %d bytes: %w", policy.MaxBytes, err)
	}
	if len(text) == 0 {
		return "", errors.New("the policy is empty; remove it with 'meshnode policy clear' on the coordinator's host")
	}
	return string(text), nil
}

// policyRoutes serves the access policy: the version in force or an older
// one, a test of it or of a draft, a check of a new one, setting it and
// removing it.
func (s *Server) policyRoutes() {
	s.mux.HandleFunc("GET /api/policy", s.read(func(r *http.Request, _ session) (any, error) {
		var version uint64
		if v := r.URL.Query().Get("version"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("policy version %q is not a version number (1, 2, ...)", v)
			}
			version = n
		}
		return s.b.Policy(r.Context(), version)
	}))
	s.mux.HandleFunc("POST /api/policy/clear", s.act(func(r *http.Request) (any, error) { return s.b.SetPolicy(r.Context(), "") }))
	s.mux.HandleFunc("GET /api/policy/test", s.read(func(r *http.Request, _ session) (any, error) {
		q := r.URL.Query()
		answer, err := s.b.AskPolicy(r.Context(), q.Get("src"), q.Get("dst"))
		return map[string]string{"answer": answer}, err
	}))
	// A draft's test carries the draft: a POST, so an action (CSRF).
	s.mux.HandleFunc("POST /api/policy/test", s.actW(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req DraftTest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, policy.MaxBytes+maxBody)).Decode(&req); err != nil {
			return nil, errors.New("malformed JSON: " + err.Error())
		}
		answer, err := s.b.AskDraftPolicy(r.Context(), req.Text, req.Src, req.Dst)
		return map[string]string{"answer": answer}, err
	}))
	s.mux.HandleFunc("POST /api/policy/check", s.actW(func(w http.ResponseWriter, r *http.Request) (any, error) {
		text, err := readPolicy(w, r)
		if err != nil {
			return nil, err
		}
		return s.b.CheckPolicy(r.Context(), text), nil
	}))
	s.mux.HandleFunc("POST /api/policy", s.actW(func(w http.ResponseWriter, r *http.Request) (any, error) {
		text, err := readPolicy(w, r)
		if err != nil {
			return nil, err
		}
		return s.b.SetPolicy(r.Context(), text)
	}))
}
