package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	ctx := context.Background()
	single := h.token(coordinator.TokenOptions{})
	reusable := h.token(coordinator.TokenOptions{Reusable: true})
	expiring, err := h.srv.CreateToken(ctx, coordinator.TokenOptions{Expiry: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := h.srv.CreateToken(ctx, coordinator.TokenOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	parsed, err := crypto.ParseToken(single)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.URL != h.cfg.PublicURL || parsed.Pin != h.srv.Fingerprint() {
		t.Fatalf("token carries %s pinned %s; want %s pinned %s", parsed.URL, parsed.Pin, h.cfg.PublicURL, h.srv.Fingerprint())
	}
	wrongSecret := parsed
	wrongSecret.Secret = "not-the-secret"
	unknownID := parsed
	unknownID.ID = "000000000000"

	tests := []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"single-use first", single, http.StatusOK, ""},
		{"single-use again", single, http.StatusForbidden, wire.ErrCodeTokenUsed},
		{"reusable 1", reusable, http.StatusOK, ""},
		{"reusable 2", reusable, http.StatusOK, ""},
		{"reusable 3", reusable, http.StatusOK, ""},
		{"expired", expiring.String(), http.StatusForbidden, wire.ErrCodeTokenExpired},
		{"revoked", revoked.String(), http.StatusForbidden, wire.ErrCodeTokenRevoked},
		{"unknown ID", unknownID.String(), http.StatusUnauthorized, wire.ErrCodeTokenUnknown},
		{"wrong secret", wrongSecret.String(), http.StatusUnauthorized, wire.ErrCodeTokenUnknown},
		{"damaged", "mntok1_!!!", http.StatusBadRequest, wire.ErrCodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ok, fail := h.register(tt.token, newNode(t, h).priv, "n")
			if status != tt.status || fail.Code != tt.code {
				t.Fatalf("status %d code %q (%s); want %d %q", status, fail.Code, fail.Error, tt.status, tt.code)
			}
			if status == http.StatusOK && len(ok.Self.Addresses) != 2 {
				t.Fatalf("addresses %v", ok.Self.Addresses)
			}
			if status != http.StatusOK && fail.Error == "" {
				t.Fatal("error without a reason")
			}
		})
	}

	toks, err := h.srv.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]coordinator.TokenInfo{}
	for _, ti := range toks {
		byID[ti.ID] = ti
	}
	if got := byID[parsed.ID]; got.Uses != 1 || got.Reusable || got.Revoked {
		t.Errorf("single-use token listed as %+v", got)
	}
	if got := byID[revoked.ID]; !got.Revoked || got.RevokedAt.IsZero() {
		t.Errorf("revoked token listed as %+v", got)
	}
	if got, want := byID[parsed.ID].Expires.Sub(byID[parsed.ID].Created), coordinator.DefaultTokenExpiry; got != want {
		t.Errorf("default expiry %v, want %v", got, want)
	}
	if err := h.srv.RevokeToken(ctx, "nope"); !errors.Is(err, coordinator.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	if h.metric("meshnode_coordinator_registrations_total", "result", wire.ErrCodeTokenUsed) != 1 ||
		h.metric("meshnode_coordinator_registrations_total", "result", "ok") != 4 {
		t.Errorf("registration metrics do not match the requests")
	}
}

func TestTokenTagsGoToNodes(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	n := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{"web", "eu"}}), "a")
	if strings.Join(n.reg.Self.Tags, ",") != "web,eu" {
		t.Fatalf("tags %v, want web,eu", n.reg.Self.Tags)
	}
	if _, err := h.srv.CreateToken(context.Background(), coordinator.TokenOptions{Tags: []string{"Bad Tag"}}); err == nil || !strings.Contains(err.Error(), `"Bad Tag"`) {
		t.Fatalf("bad tag accepted or not named: %v", err)
	}
}

func TestRegisterBadRequests(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	token := h.token(coordinator.TokenOptions{Reusable: true})
	key := newNode(t, h).key()
	valid, _ := json.Marshal(h.request(token, newNode(t, h).priv, "x"))
	noKey, _ := json.Marshal(map[string]string{"token": token, "name": "x"})
	padded := append(bytes.TrimSuffix(valid, []byte("}")), []byte(`,"pad":"`+strings.Repeat("x", wire.MaxRequestBody)+`"}`)...)
	tests := []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"malformed JSON", []byte(`{"token": `), http.StatusBadRequest, "malformed JSON"},
		{"not JSON", []byte(`hello`), http.StatusBadRequest, "malformed JSON"},
		{"empty", nil, http.StatusBadRequest, "empty request body"},
		{"bad key", []byte(`{"token":"` + token + `","public_key":"short"}`), http.StatusBadRequest, "public key"},
		{"missing key", noKey, http.StatusBadRequest, "public_key is missing"},
		{"not a token", []byte(`{"token":"hello","public_key":"` + key.String() + `"}`), http.StatusBadRequest, "mntok1_"},
		{"oversized", padded, http.StatusRequestEntityTooLarge, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, fail, err := h.post(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status || fail.Code != wire.ErrCodeBadRequest || !strings.Contains(fail.Error, tt.reason) {
				t.Fatalf("got %d %q %q; want %d bad_request mentioning %q", status, fail.Code, fail.Error, tt.status, tt.reason)
			}
		})
	}
	// A chunked oversized body (no Content-Length) is refused too.
	req, _ := http.NewRequest(http.MethodPost, h.url+wire.PathRegister, struct{ *bytes.Reader }{bytes.NewReader(padded)})
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body: %d, want 413", resp.StatusCode)
	}
}

func TestPoolExhausted(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Network = netip.MustParsePrefix("10.77.0.0/30")
	h := start(t, cfg)
	token := h.token(coordinator.TokenOptions{Reusable: true})
	newNode(t, h).join(token, "a")
	newNode(t, h).join(token, "b")
	status, _, fail := h.register(token, newNode(t, h).priv, "c")
	if status != http.StatusInsufficientStorage || fail.Code != wire.ErrCodePoolFull || !strings.Contains(fail.Error, "10.77.0.0/30") {
		t.Fatalf("got %d %s %q; want 507 pool_exhausted naming 10.77.0.0/30", status, fail.Code, fail.Error)
	}
}

func TestNamesAndAddresses(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	token := h.token(coordinator.TokenOptions{Reusable: true})
	tests := []struct {
		name, want, v4, v6 string
	}{
		{"Alice's MacBook Pro", "alice-s-macbook-pro", "100.88.0.1", "fd6d:6573:686e::1"},
		{"alice-s-macbook-pro", "alice-s-macbook-pro-2", "100.88.0.2", "fd6d:6573:686e::2"},
		{"--web_01.example.com--", "web-01-example-com", "100.88.0.3", "fd6d:6573:686e::3"},
		{"", "node", "100.88.0.4", "fd6d:6573:686e::4"},
		{"ñññ", "node-2", "100.88.0.5", "fd6d:6573:686e::5"},
		{strings.Repeat("x", 100), strings.Repeat("x", 63), "100.88.0.6", "fd6d:6573:686e::6"},
	}
	for _, tt := range tests {
		n := newNode(t, h).join(token, tt.name)
		self := n.reg.Self
		if self.Name != tt.want || self.Addresses[0].String() != tt.v4 || self.Addresses[1].String() != tt.v6 {
			t.Errorf("%q registered as %s %v; want %s [%s %s]", tt.name, self.Name, self.Addresses, tt.want, tt.v4, tt.v6)
		}
		if n.reg.NetworkV4 != h.cfg.Network || n.reg.NetworkV6 != h.cfg.NetworkV6 || n.reg.CoordinatorKey.IsZero() {
			t.Errorf("registration response %+v", n.reg)
		}
	}
}

func TestSameKeyKeepsRegistration(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	single := h.token(coordinator.TokenOptions{})
	n := newNode(t, h).join(single, "first")
	// The answer got lost: the node retries with the same single-use token.
	again := newNode(t, h)
	again.priv = n.priv
	again.join(single, "other-name")
	// Later it re-registers with another token.
	third := newNode(t, h)
	third.priv = n.priv
	third.join(h.token(coordinator.TokenOptions{}), "yet-another")
	for _, r := range []wire.RegisterResponse{again.reg, third.reg} {
		if r.Self.Name != "first" || r.Self.Addresses[0] != n.reg.Self.Addresses[0] || r.Self.Addresses[1] != n.reg.Self.Addresses[1] {
			t.Fatalf("re-registration gave %s %v; want first %v", r.Self.Name, r.Self.Addresses, n.reg.Self.Addresses)
		}
	}
}

func TestAddressesStableAcrossRestart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	h := start(t, cfg)
	token := h.token(coordinator.TokenOptions{Reusable: true})
	nodes := []*node{newNode(t, h).join(token, "a"), newNode(t, h).join(token, "b"), newNode(t, h).join(token, "c")}
	pin := h.srv.Fingerprint()
	h.stop()

	h2 := start(t, cfg)
	if h2.srv.Fingerprint() != pin {
		t.Fatalf("certificate pin changed across restart: %s, then %s", pin, h2.srv.Fingerprint())
	}
	// The old token still works: it lives in the store.
	for _, n := range nodes {
		again := &node{t: t, h: h2, priv: n.priv}
		again.join(token, "renamed")
		if again.reg.Self.Name != n.reg.Self.Name || !equalAddrs(again.reg.Self.Addresses, n.reg.Self.Addresses) {
			t.Errorf("after restart %s %v; before %s %v", again.reg.Self.Name, again.reg.Self.Addresses, n.reg.Self.Name, n.reg.Self.Addresses)
		}
		if again.reg.CoordinatorKey != n.reg.CoordinatorKey {
			t.Errorf("coordinator key changed across restart")
		}
	}
	list, err := h2.srv.Nodes(context.Background())
	if err != nil || len(list) != 3 {
		t.Fatalf("Nodes after restart: %d, %v", len(list), err)
	}
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Not parallel: 400 TLS handshakes at once take the CPU, and must finish
// within the pre-authentication deadline (preAuthLimits) to register.
func TestConcurrentRegistrations(t *testing.T) {
	// 199 of the single-use token's registrations fail, all from loopback.
	h := start(t, testConfig(t), coordinator.UnlimitFailedRegistrations)
	const n = 200
	reusable := h.token(coordinator.TokenOptions{Reusable: true})
	single := h.token(coordinator.TokenOptions{})

	type result struct {
		status int
		ok     wire.RegisterResponse
		code   string
	}
	run := func(token string) []result {
		// Proven requests first, so that the registrations themselves race.
		bodies := make([][]byte, n)
		for i := range bodies {
			bodies[i], _ = json.Marshal(h.request(token, newNode(t, h).priv, "node"))
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				status, ok, fail, err := h.post(bodies[i])
				if err != nil {
					t.Errorf("register %d: %v", i, err)
				}
				results[i] = result{status, ok, fail.Code}
			})
		}
		wg.Wait()
		return results
	}

	seen := map[string]bool{}
	for _, r := range run(reusable) {
		if r.status != http.StatusOK {
			t.Fatalf("registration failed: %d %s", r.status, r.code)
		}
		for _, id := range []string{r.ok.Self.Name, r.ok.Self.Addresses[0].String(), r.ok.Self.Addresses[1].String()} {
			if seen[id] {
				t.Fatalf("%s given to two nodes", id)
			}
			seen[id] = true
		}
	}
	successes := 0
	for _, r := range run(single) {
		switch {
		case r.status == http.StatusOK:
			successes++
		case r.code != wire.ErrCodeTokenUsed:
			t.Fatalf("single-use race: %d %s, want token_used", r.status, r.code)
		}
	}
	if successes != 1 {
		t.Fatalf("single-use token used %d times by %d concurrent registrations", successes, n)
	}
	if got := h.metric("meshnode_coordinator_nodes", "", ""); got != n+1 {
		t.Fatalf("nodes gauge %v, want %d", got, n+1)
	}
}

// BenchmarkRegister measures one registration over HTTPS, bound by the
// synced commit that makes it durable.
func BenchmarkRegister(b *testing.B) {
	h := start(b, testConfig(b))
	token := h.token(coordinator.TokenOptions{Reusable: true})
	for b.Loop() {
		status, _, fail := h.register(token, newNode(b, h).priv, "bench")
		if status != http.StatusOK {
			b.Fatalf("register: %d %s", status, fail.Error)
		}
	}
}
