package coordinator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/http"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// Registration challenges are stateless, so that strangers asking for them
// fill no table: a challenge is the time it was issued, a random nonce and
// a MAC over both under a key this process chose at start. Only this
// coordinator could have issued it, and only recently. A challenge may be
// answered more than once while it lives: a proof shows possession of a
// key, and registering the same key again is idempotent.
const (
	// registerChallengeTTL is how long a node has to answer: it does so at
	// once, so a minute covers slow links and little else.
	registerChallengeTTL = time.Minute
	challengeNonceLen    = 16
	challengeMACLen      = sha256.Size
	challengeBodyLen     = 8 + challengeNonceLen
	registerChallengeLen = challengeBodyLen + challengeMACLen
)

// errChallengeStale refuses a challenge that is too old, malformed, or
// not issued by this run of the coordinator.
var errChallengeStale = errors.New("registration challenge expired or not issued by this coordinator")

// challenger issues and checks registration challenges.
type challenger struct {
	key [32]byte
}

func newChallenger() *challenger {
	c := &challenger{}
	rand.Read(c.key[:]) // never fails (crypto/rand, Go 1.24+)
	return c
}

func (c *challenger) mac(body []byte) []byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write(body)
	return m.Sum(nil)
}

// issue returns a new challenge.
func (c *challenger) issue(now time.Time) []byte {
	b := make([]byte, challengeBodyLen, registerChallengeLen)
	binary.BigEndian.PutUint64(b, uint64(now.UnixMilli()))
	rand.Read(b[8:])
	return append(b, c.mac(b)...)
}

// check accepts a challenge this challenger issued within the TTL (either
// way, should the wall clock have stepped back).
func (c *challenger) check(ch []byte, now time.Time) error {
	if len(ch) != registerChallengeLen {
		return errChallengeStale
	}
	body, mac := ch[:challengeBodyLen], ch[challengeBodyLen:]
	if !hmac.Equal(mac, c.mac(body)) {
		return errChallengeStale
	}
	age := now.Sub(time.UnixMilli(int64(binary.BigEndian.Uint64(body))))
	if age > registerChallengeTTL || age < -registerChallengeTTL {
		return errChallengeStale
	}
	return nil
}

// handleRegisterChallenge gives a node the challenge its registration must
// answer, and the key it proves its own to.
func (s *Server) handleRegisterChallenge(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Connection", "close") // see handleRegister
	writeJSON(w, http.StatusOK, wire.RegisterChallenge{Challenge: s.challenges.issue(time.Now()), CoordinatorKey: s.key.Public()})
}
