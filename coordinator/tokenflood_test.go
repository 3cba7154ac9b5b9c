package coordinator_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Bogus join tokens: for a real token, its ID with a guessed secret; for
// none, a guessed ID. Both point at h, so they get past the parser.
func bogusTokens(t testing.TB, h *harness, real string) []string {
	t.Helper()
	tok, err := crypto.ParseToken(real)
	if err != nil {
		t.Fatal(err)
	}
	guessedSecret, guessedID := tok, tok
	guessedSecret.Secret = "guessed-secret"
	guessedID.ID = "000000000000"
	return []string{guessedSecret.String(), guessedID.String()}
}

// floodBodies are proven registrations with bogus tokens. A challenge may
// be answered more than once while it lives, so a flood reuses these.
func floodBodies(t testing.TB, h *harness, real string) [][]byte {
	t.Helper()
	var bodies [][]byte
	for _, tok := range bogusTokens(t, h, real) {
		b, err := json.Marshal(h.request(tok, newNode(t, h).priv, "intruder"))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	return bodies
}

// writeTransactions is the store's count of write transactions so far.
func (h *harness) writeTransactions() float64 {
	return h.metric("meshnode_coordinator_store_write_transactions_total", "", "")
}

// A stranger floods the registration endpoint with bogus tokens, from many
// connections at once, while real nodes register. The real registrations
// all succeed, and the bogus ones never open a write transaction: the
// store counts exactly one per real registration. (The flood's source is
// the real nodes' too, loopback, so its failure budget is lifted here:
// what is tested is the cost of a bogus token, not the budget.)
func TestBogusTokenFloodTakesNoWriteLock(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t), coordinator.UnlimitFailedRegistrations)
	reusable := h.token(coordinator.TokenOptions{Reusable: true})
	bodies := floodBodies(t, h, reusable)
	const (
		flooders  = 16
		perFlood  = 40
		realNodes = 24
	)
	real := make([][]byte, realNodes)
	for i := range real {
		real[i], _ = json.Marshal(h.request(reusable, newNode(t, h).priv, "node"))
	}
	before := h.writeTransactions()

	var wg sync.WaitGroup
	var refused, otherAnswers atomic.Int64
	start := make(chan struct{})
	for f := range flooders {
		wg.Go(func() {
			<-start
			for i := range perFlood {
				status, _, fail, err := h.post(bodies[(f+i)%len(bodies)])
				switch {
				case err != nil:
					t.Errorf("bogus registration: %v", err)
				case status == http.StatusUnauthorized && fail.Code == wire.ErrCodeTokenUnknown:
					refused.Add(1)
				default:
					otherAnswers.Add(1)
					t.Errorf("bogus registration answered %d %s", status, fail.Code)
				}
			}
		})
	}
	took := make([]time.Duration, realNodes)
	for i := range real {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			status, _, fail, err := h.post(real[i])
			took[i] = time.Since(t0)
			if err != nil || status != http.StatusOK {
				t.Errorf("real registration %d during the flood: %d %s %s, %v", i, status, fail.Code, fail.Error, err)
			}
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(took)
	t.Logf("real registrations during the flood: median %v, slowest %v", took[realNodes/2].Round(time.Millisecond), took[realNodes-1].Round(time.Millisecond))

	if got := refused.Load(); got != flooders*perFlood {
		t.Fatalf("%d bogus registrations refused as token_unknown, want %d (%d other answers)", got, flooders*perFlood, otherAnswers.Load())
	}
	if got := h.writeTransactions() - before; got != realNodes {
		t.Fatalf("%v write transactions during the flood, want %d: one per real registration, none for a bogus token", got, realNodes)
	}
	if got := h.metric("meshnode_coordinator_nodes", "", ""); got != realNodes {
		t.Fatalf("nodes gauge %v, want %d", got, realNodes)
	}
}
