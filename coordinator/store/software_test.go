package store

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// What a node reports running is kept, replaced by its next report, and
// goes with the node; an unknown or removed node's is refused.
func TestSoftware(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		a, b := newKey(t), newKey(t)
		for k, name := range map[crypto.PublicKey]string{a: "a", b: "b"} {
			if _, err := register(s, "fleet", secret, k, name); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.Software(ctx); err != nil || len(got) != 0 {
			t.Fatalf("before any report: %v, %v; want none", got, err)
		}
		v1, v2 := wire.Software{Version: "v1", OS: "linux/amd64"}, wire.Software{Version: "v2", OS: "linux/amd64"}
		for _, step := range []struct {
			key crypto.PublicKey
			sw  wire.Software
		}{{a, v1}, {b, v1}, {a, v2}} {
			if err := s.SetSoftware(ctx, step.key, step.sw); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.Software(ctx); err != nil || !maps.Equal(got, map[crypto.PublicKey]wire.Software{a: v2, b: v1}) {
			t.Fatalf("software: %v, %v; want a v2, b v1", got, err)
		}
		if _, err := s.RemoveNode(ctx, "b", time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Software(ctx); err != nil || !maps.Equal(got, map[crypto.PublicKey]wire.Software{a: v2}) {
			t.Fatalf("after b's removal: %v, %v; want a's alone", got, err)
		}
		for _, k := range []crypto.PublicKey{b, newKey(t)} {
			if err := s.SetSoftware(ctx, k, v1); !errors.Is(err, ErrNotFound) {
				t.Errorf("software of a removed or unknown node: %v; want ErrNotFound", err)
			}
		}
	})
}
