package store

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestCheckToken(t *testing.T) {
	t.Parallel()
	now := time.Now()
	secret := "s3cret"
	valid := Token{ID: "a", SecretHash: crypto.HashSecret(secret), Expires: now.Add(time.Hour)}
	with := func(f func(*Token)) Token { t := valid; f(&t); return t }
	tests := []struct {
		name   string
		tok    Token
		secret string
		retry  bool
		want   error
	}{
		{"valid", valid, secret, false, nil},
		{"wrong secret", valid, "guess", false, ErrTokenUnknown},
		{"revoked", with(func(t *Token) { t.Revoked = now }), secret, false, ErrTokenRevoked},
		{"expired", with(func(t *Token) { t.Expires = now }), secret, false, ErrTokenExpired},
		{"used", with(func(t *Token) { t.Uses = 1 }), secret, false, ErrTokenUsed},
		{"used, retry by its node", with(func(t *Token) { t.Uses = 1 }), secret, true, nil},
		{"reusable used", with(func(t *Token) { t.Uses = 5; t.Reusable = true }), secret, false, nil},
		{"revoked beats used", with(func(t *Token) { t.Uses = 1; t.Revoked = now }), secret, false, ErrTokenRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckToken(tt.tok, tt.secret, now, tt.retry); !errors.Is(err, tt.want) {
				t.Fatalf("CheckToken = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRegisterRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		secret := addToken(t, s, "single", false, time.Now().Add(time.Hour), "web")
		reuse := addToken(t, s, "reuse", true, time.Now().Add(time.Hour), "db")
		k1, k2, k3 := newKey(t), newKey(t), newKey(t)

		n1, err := register(s, "single", secret, k1, "laptop")
		if err != nil {
			t.Fatal(err)
		}
		if n1.Name != "laptop" || n1.IPv4.String() != "100.88.0.1" || n1.IPv6.String() != "fd6d:6573:686e::1" || n1.Tags[0] != "web" {
			t.Fatalf("first node = %+v", n1)
		}
		// The same node retrying with its single-use token gets the same answer.
		if again, err := register(s, "single", secret, k1, "other"); err != nil || again.IPv4 != n1.IPv4 || again.Name != "laptop" {
			t.Fatalf("retry = %+v, %v; want the same registration", again, err)
		}
		// Another node can't use it.
		if _, err := register(s, "single", secret, k2, "laptop"); !errors.Is(err, ErrTokenUsed) {
			t.Fatalf("second use = %v, want ErrTokenUsed", err)
		}
		n2, err := register(s, "reuse", reuse, k2, "laptop")
		if err != nil || n2.Name != "laptop-2" || n2.IPv4.String() != "100.88.0.2" {
			t.Fatalf("name collision = %+v, %v; want laptop-2 at 100.88.0.2", n2, err)
		}
		// Re-registering with another token keeps name and addresses, adds tags.
		again, err := register(s, "reuse", reuse, k1, "renamed")
		if err != nil || again.Name != "laptop" || again.IPv4 != n1.IPv4 || strings.Join(again.Tags, ",") != "web,db" {
			t.Fatalf("re-register = %+v, %v", again, err)
		}
		// Removing frees the name and the lowest address for the next node.
		if _, err := s.RemoveNode(ctx, "laptop", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Node(ctx, k1); !errors.Is(err, ErrRemoved) {
			t.Fatalf("Node(removed) = %v, want ErrRemoved", err)
		}
		n3, err := register(s, "reuse", reuse, k3, "laptop")
		if err != nil || n3.Name != "laptop" || n3.IPv4 != n1.IPv4 {
			t.Fatalf("after removal = %+v, %v; want laptop at %v", n3, err, n1.IPv4)
		}
		if _, err := s.RemoveNode(ctx, "nobody", time.Now()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RemoveNode(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := register(s, "nope", reuse, newKey(t), "x"); !errors.Is(err, ErrTokenUnknown) {
			t.Fatalf("unknown token = %v", err)
		}
	})
}

func TestEndpointsAndPresencePersist(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		secret := addToken(t, s, "t", true, time.Now().Add(time.Hour))
		k := newKey(t)
		if _, err := register(s, "t", secret, k, "a"); err != nil {
			t.Fatal(err)
		}
		eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.5:41820"), Kind: wire.EndpointSTUN}}
		nat := &wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocPreserve}
		seen := time.UnixMilli(time.Now().UnixMilli())
		if err := s.SetEndpoints(t.Context(), k, eps, nat); err != nil {
			t.Fatal(err)
		}
		if err := s.SetLastSeen(t.Context(), k, seen); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openTest(t, path)
		n, err := s.Node(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Endpoints) != 1 || n.Endpoints[0] != eps[0] || *n.NAT != *nat || !n.LastSeen.Equal(seen) {
			t.Fatalf("after reopen: %+v", n)
		}
		if err := s.SetEndpoints(t.Context(), newKey(t), eps, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetEndpoints(unknown) = %v, want ErrNotFound", err)
		}
	})
}
