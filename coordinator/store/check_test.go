package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// CheckRegistration refuses what Register would, with the same error, and
// writes nothing: it never begins a write transaction.
func TestCheckRegistrationAgreesAndWritesNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		soon := time.Now().Add(time.Hour)
		single := addToken(t, s, "single", false, soon)
		reuse := addToken(t, s, "reuse", true, soon)
		revoked := addToken(t, s, "revoked", true, soon)
		expired := addToken(t, s, "expired", true, time.Now().Add(-time.Minute))
		if err := s.RevokeToken(ctx, "revoked", time.Now()); err != nil {
			t.Fatal(err)
		}
		user, banned := newKey(t), newKey(t)
		if _, err := register(s, "single", single, user, "user"); err != nil {
			t.Fatal(err)
		}
		if _, err := register(s, "reuse", reuse, banned, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RemoveNode(ctx, "gone", time.Now()); err != nil {
			t.Fatal(err)
		}

		var fresh crypto.PublicKey // a new key each time
		tests := []struct {
			name       string
			id, secret string
			key        crypto.PublicKey
			want       error
		}{
			{"unknown ID", "nope", reuse, fresh, ErrTokenUnknown},
			{"wrong secret", "reuse", "guessed", fresh, ErrTokenUnknown},
			{"revoked", "revoked", revoked, fresh, ErrTokenRevoked},
			{"expired", "expired", expired, fresh, ErrTokenExpired},
			{"used by another node", "single", single, fresh, ErrTokenUsed},
			{"banned key, valid token", "reuse", reuse, banned, ErrBanned},
			{"banned key, bogus token", "nope", "guessed", banned, ErrBanned},
			{"retry of its user", "single", single, user, nil},
			{"valid", "reuse", reuse, fresh, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := tt.key
				if key == fresh {
					key = newKey(t)
				}
				r := Registration{TokenID: tt.id, Secret: tt.secret, Key: key, Name: "n", Pool: testPool, Now: time.Now()}
				before := s.WriteTransactions()
				if err := s.CheckRegistration(context.Background(), r); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Fatalf("CheckRegistration = %v, want %v", err, tt.want)
				}
				if w := s.WriteTransactions() - before; w != 0 {
					t.Fatalf("CheckRegistration began %d write transactions", w)
				}
				_, err := s.Register(context.Background(), r)
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Fatalf("Register = %v, want %v", err, tt.want)
				}
			})
		}
	})
}
