package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// fakePolicy is the fake backend's policy in force.
type fakePolicy struct {
	Version uint64 `json:"version"`
	Text    string `json:"text"`
}

func (f *fakeBackend) Policy(_ context.Context, version uint64) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case version != 0 && (f.policy == nil || version > f.policy.Version):
		return nil, fmt.Errorf("there is no access policy version %d", version)
	case version != 0 && version < f.policy.Version:
		return fakePolicy{Version: version, Text: f.older[version]}, nil
	case f.policy == nil:
		return nil, nil
	}
	return *f.policy, nil
}

func (f *fakeBackend) CheckPolicy(_ context.Context, text string) PolicyCheck {
	pol, err := policy.Parse("policy", []byte(text))
	if err != nil {
		var c PolicyCheck
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			c.Errors = append(c.Errors, e.Error())
		}
		return c
	}
	return PolicyCheck{Valid: true, Rules: pol.Rules()}
}

func (f *fakeBackend) SetPolicy(ctx context.Context, text string) (any, error) {
	if c := f.CheckPolicy(ctx, text); text != "" && !c.Valid {
		return nil, &policy.Error{File: "policy", Msg: strings.Join(c.Errors, "\n")}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := fakePolicy{Version: 1, Text: text}
	if f.policy != nil {
		next.Version = f.policy.Version + 1
		if f.older == nil {
			f.older = make(map[uint64]string)
		}
		f.older[f.policy.Version] = f.policy.Text
	}
	f.policy = &next
	return next, nil
}

func (f *fakeBackend) AskPolicy(_ context.Context, src, target string) (string, error) {
	res, _ := policy.Resolve(nil, 0, nil, policy.Network{})
	return res.Ask([]wire.Node{{Name: "laptop", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")}}}, src, target)
}

func (f *fakeBackend) AskDraftPolicy(_ context.Context, text, src, target string) (string, error) {
	pol, err := policy.Parse("policy", []byte(text))
	if err != nil {
		return "", err
	}
	laptop := netip.MustParseAddr("100.88.0.2")
	res, err := policy.Resolve(pol, 0, []policy.Node{{Name: "laptop", Addrs: []netip.Addr{laptop}}}, policy.Network{})
	if err != nil {
		return "", err
	}
	return res.Ask([]wire.Node{{Name: "laptop", Addresses: []netip.Addr{laptop}}}, src, target)
}

const goodPolicy = "rules:\n  - from: [tag:home]\n    to: [tag:office]\n    ports: [443]\n"

func TestPolicyViewCheckAndSet(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	p.back.policy = &fakePolicy{Version: 3, Text: goodPolicy}
	c := p.login(t, p.srv.NewLink())
	_, sess := p.do(t, "GET", "/api/session", c, nil)
	csrf, _ := sess["csrf"].(string)
	act := map[string]string{"Origin": p.url, CSRFHeader: csrf}

	if code, got := p.do(t, "GET", "/api/policy", c, nil); code != http.StatusOK || got["version"] != 3.0 || got["text"] != goodPolicy {
		t.Fatalf("view: %d %v, want version 3 and its text", code, got)
	}

	bad := "rules:\n  - from: [tag:home]\n    to: [tag:office]\n    proto: tcpp\n    ports: [99999]\n"
	code, got := p.send(t, "POST", "/api/policy/check", bad, c, act)
	errs, _ := got["errors"].([]any)
	if code != http.StatusOK || got["valid"] == true || len(errs) < 2 {
		t.Fatalf("check of a bad policy: %d %v, want two errors", code, got)
	}
	for _, want := range []string{"policy:4:", "policy:5:"} {
		if !strings.Contains(toString(errs), want) {
			t.Errorf("check errors %v: none at %s (line:col)", errs, want)
		}
	}

	next := strings.Replace(goodPolicy, "443", "22", 1)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"set without the CSRF token", map[string]string{"Origin": p.url}, next, http.StatusForbidden},
		{"set of a body over the limit", act, goodPolicy + strings.Repeat("#", policy.MaxBytes), http.StatusRequestEntityTooLarge},
		{"set of a bad policy", act, bad, http.StatusBadRequest},
	} {
		if code, got := p.send(t, "POST", "/api/policy", tc.body, c, tc.hdr); code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, code, got, tc.want)
		}
	}
	if code, got := p.do(t, "GET", "/api/policy", c, nil); code != http.StatusOK || got["version"] != 3.0 {
		t.Fatalf("refused sets changed the policy: %d %v", code, got)
	}

	if code, got := p.send(t, "POST", "/api/policy", next, c, act); code != http.StatusOK || got["version"] != 4.0 {
		t.Fatalf("set with the token: %d %v, want version 4", code, got)
	}
	if code, got := p.do(t, "GET", "/api/policy", c, nil); got["version"] != 4.0 || got["text"] != next {
		t.Errorf("view after set: %d %v, want version 4 and the new text", code, got)
	}

	if code, got := p.do(t, "POST", "/api/policy/clear", c, map[string]string{"Origin": p.url}); code != http.StatusForbidden {
		t.Errorf("clear without the CSRF token: %d %v, want 403", code, got)
	}
	if code, got := p.do(t, "POST", "/api/policy/clear", c, act); code != http.StatusOK || got["version"] != 5.0 || got["text"] != "" {
		t.Fatalf("clear: %d %v, want version 5, without text", code, got)
	}
	for _, tc := range []struct {
		query string
		code  int
		want  map[string]any
	}{
		{"?version=4", http.StatusOK, map[string]any{"version": 4.0, "text": next}},
		{"?version=3", http.StatusOK, map[string]any{"version": 3.0, "text": goodPolicy}},
		{"", http.StatusOK, map[string]any{"version": 5.0, "text": ""}},
		{"?version=9", http.StatusBadRequest, map[string]any{"error": "there is no access policy version 9"}},
		{"?version=0", http.StatusBadRequest, map[string]any{"error": `policy version "0" is not a version number (1, 2, ...)`}},
		{"?version=x", http.StatusBadRequest, map[string]any{"error": `policy version "x" is not a version number (1, 2, ...)`}},
	} {
		if code, got := p.do(t, "GET", "/api/policy"+tc.query, c, nil); code != tc.code || !maps.Equal(got, tc.want) {
			t.Errorf("GET /api/policy%s: %d %v, want %d %v", tc.query, code, got, tc.code, tc.want)
		}
	}
}

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	c := p.login(t, p.srv.NewLink())
	for _, tc := range []struct {
		src, dst string
		code     int
		want     string
	}{
		{"laptop", "laptop:22/tcp", http.StatusOK, "allow: laptop -> laptop (100.88.0.2) tcp/22"},
		{"laptop", "laptop/tcp", http.StatusBadRequest, "needs a port"},
		{"ghost", "laptop:22", http.StatusBadRequest, `SRC "ghost"`},
	} {
		code, got := p.do(t, "GET", "/api/policy/test?"+url.Values{"src": {tc.src}, "dst": {tc.dst}}.Encode(), c, nil)
		text, _ := got["answer"].(string)
		if e, ok := got["error"].(string); ok {
			text = e
		}
		if code != tc.code || !strings.Contains(text, tc.want) {
			t.Errorf("test %s %s: %d %q, want %d and %q", tc.src, tc.dst, code, text, tc.code, tc.want)
		}
	}
}

// A draft is tested before it is set: the answer under the draft, and the
// draft's errors; it needs the CSRF token, as any action.
func TestPolicyDraftTest(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	c := p.login(t, p.srv.NewLink())
	_, sess := p.do(t, "GET", "/api/session", c, nil)
	csrf, _ := sess["csrf"].(string)
	act := map[string]string{"Origin": p.url, CSRFHeader: csrf}
	deny := "rules:\n  - {from: laptop, to: laptop, ports: [443], proto: tcp}\n"
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body string
		code int
		want string
	}{
		{"denied by the draft", act, `{"text": ` + strconvQuote(deny) + `, "src": "laptop", "dst": "laptop:22/tcp"}`, http.StatusOK, "deny: laptop -> laptop (100.88.0.2) tcp/22"},
		{"allowed by the draft", act, `{"text": ` + strconvQuote(deny) + `, "src": "laptop", "dst": "laptop:443/tcp"}`, http.StatusOK, "allow: laptop -> laptop (100.88.0.2) tcp/443"},
		{"a draft with a mistake", act, `{"text": "rules: [", "src": "laptop", "dst": "laptop:22/tcp"}`, http.StatusBadRequest, "policy:"},
		{"without the CSRF token", map[string]string{"Origin": p.url}, `{"text": "", "src": "laptop", "dst": "laptop:22"}`, http.StatusForbidden, "CSRF"},
		{"not JSON", act, `text`, http.StatusBadRequest, "malformed JSON"},
	} {
		code, got := p.send(t, "POST", "/api/policy/test", tc.body, c, tc.hdr)
		text, _ := got["answer"].(string)
		if e, ok := got["error"].(string); ok {
			text = e
		}
		if code != tc.code || !strings.Contains(text, tc.want) {
			t.Errorf("%s: %d %q, want %d and %q", tc.name, code, text, tc.code, tc.want)
		}
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func toString(xs []any) string {
	var b strings.Builder
	for _, x := range xs {
		s, _ := x.(string)
		b.WriteString(s + "\n")
	}
	return b.String()
}
