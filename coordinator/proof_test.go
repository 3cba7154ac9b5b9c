package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// A member holding a token can't register a key it doesn't own: here it
// tries to put the victim's registered key under its own token, whose
// relay tag would designate the victim's key as a relay (and hand the
// attacker's tags to a node it doesn't control).
func TestRegisterRequiresProofOfKey(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	victim := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "victim")
	attacker := newNode(t, h)
	relayToken := h.token(coordinator.TokenOptions{Reusable: true, Tags: []string{coordinator.RelayTag}})

	// The attacker answers a real challenge with its own key's proof,
	// presenting the victim's public key.
	forged := h.request(relayToken, attacker.priv, "victim")
	forged.PublicKey = victim.key()
	// A stream proof of the victim's, had the attacker somehow seen one,
	// is for another label.
	ch := h.challenge()
	streamProof, err := crypto.Proof(victim.priv, ch.CoordinatorKey, wire.ProofLabel, ch.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	otherLabel := wire.RegisterRequest{Token: relayToken, PublicKey: victim.key(), Name: "victim", Challenge: ch.Challenge, Proof: streamProof}
	// A challenge the coordinator never issued.
	tampered := h.request(relayToken, victim.priv, "victim")
	tampered.Challenge[0] ^= 1
	other := start(t, testConfig(t))
	elsewhere := other.request(relayToken, victim.priv, "victim")
	legacy := wire.RegisterRequest{Token: relayToken, PublicKey: victim.key(), Name: "victim"}

	tests := []struct {
		name   string
		req    wire.RegisterRequest
		status int
		code   string
		reason string
	}{
		{"proof by another key", forged, http.StatusUnauthorized, wire.ErrCodeUnauthorized, "private key"},
		{"proof for the stream", otherLabel, http.StatusUnauthorized, wire.ErrCodeUnauthorized, "private key"},
		{"tampered challenge", tampered, http.StatusUnauthorized, wire.ErrCodeChallengeExpired, "fetch a new one"},
		{"another coordinator's challenge", elsewhere, http.StatusUnauthorized, wire.ErrCodeChallengeExpired, "fetch a new one"},
		{"no proof (an older node)", legacy, http.StatusBadRequest, wire.ErrCodeBadRequest, "upgrade meshnode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(tt.req)
			status, _, fail, err := h.post(body)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status || fail.Code != tt.code || !strings.Contains(fail.Error, tt.reason) {
				t.Fatalf("got %d %s %q; want %d %s mentioning %q", status, fail.Code, fail.Error, tt.status, tt.code, tt.reason)
			}
		})
	}
	// The victim is unharmed: not tagged, not designated.
	nodes, err := h.srv.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PublicKey == victim.key() && slices.Contains(n.Tags, coordinator.RelayTag) {
			t.Fatalf("victim got the attacker's tags: %v", n.Tags)
		}
	}
	if len(nodes) != 1 {
		t.Fatalf("%d nodes registered, want only the victim", len(nodes))
	}
	// The real owner of the key can.
	victim.join(relayToken, "victim")
	if !slices.Contains(victim.reg.Self.Tags, coordinator.RelayTag) || victim.reg.CoordinatorKey != ch.CoordinatorKey {
		t.Fatalf("owner's re-registration: %+v", victim.reg)
	}
}

// A challenge carries the key the proof is made for: the coordinator's.
func TestRegisterChallenge(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	a, b := h.challenge(), h.challenge()
	if len(a.Challenge) < 32 || string(a.Challenge) == string(b.Challenge) {
		t.Fatalf("challenges %x and %x: want long and distinct", a.Challenge, b.Challenge)
	}
	n := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "a")
	if a.CoordinatorKey != n.reg.CoordinatorKey {
		t.Fatal("the challenge names another key than the registration's coordinator key")
	}
}
