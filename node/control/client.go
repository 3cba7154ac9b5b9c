// Package control is the node's client of the coordinator: registration
// with a join token, then one long-lived authenticated stream that carries
// the peer map, rendezvous cues and this node's candidates, resumed with
// backoff and jitter whenever it drops.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// requestTimeout bounds one control API request.
const requestTimeout = 15 * time.Second

// NewHTTPClient returns a client that trusts only the pinned certificate.
func NewHTTPClient(pin string) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         Dialer().DialContext,
			TLSClientConfig:     crypto.PinnedTLSConfig(pin),
			TLSHandshakeTimeout: requestTimeout,
			ForceAttemptHTTP2:   true,
		},
	}
}

// RejectedError is the coordinator's refusal, with its code and reason.
type RejectedError struct {
	Status int
	Code   string
	Reason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("coordinator refused (%s): %s", e.Code, e.Reason)
}

// Permanent reports whether retrying a registration can't help: the token
// or the node itself was refused, or the request was (a bad name or key
// won't fix itself). The stream judges refusals by refusesNode instead.
func (e *RejectedError) Permanent() bool {
	switch e.Code {
	case wire.ErrCodeTokenUnknown, wire.ErrCodeTokenExpired, wire.ErrCodeTokenUsed,
		wire.ErrCodeTokenRevoked, wire.ErrCodeNodeRemoved, wire.ErrCodeBadRequest,
		wire.ErrCodeUnauthorized, wire.ErrCodePoolFull:
		return true
	}
	return false
}

// refusesNode reports whether a refusal on the stream is of this node
// itself: removed from the mesh, or its key unknown or unproven, which no
// reconnect can change. Any other refusal, a bad_request about one message
// included, ends only that session: a node must not stop over one update
// the coordinator didn't take.
func (e *RejectedError) refusesNode() bool {
	return e.Code == wire.ErrCodeNodeRemoved || e.Code == wire.ErrCodeUnauthorized
}

// Register presents a join token to the coordinator c, one of those it
// names, with this node's key and name; hc is pinned to c's pin. It proves
// the key first: the coordinator's challenge is answered with a proof only
// the holder of priv can make, so no one registers a key it doesn't own.
func Register(ctx context.Context, hc *http.Client, c crypto.Coordinator, tokenString string, priv crypto.PrivateKey, name string) (wire.RegisterResponse, error) {
	var out wire.RegisterResponse
	base := strings.TrimSuffix(c.URL, "/")
	ch, err := registerChallenge(ctx, hc, base+wire.PathRegisterChallenge)
	if err != nil {
		return out, err
	}
	proof, err := crypto.Proof(priv, ch.CoordinatorKey, wire.RegisterProofLabel, ch.Challenge)
	if err != nil {
		return out, fmt.Errorf("register: prove the node's key: %w", err)
	}
	body, err := json.Marshal(wire.RegisterRequest{
		Token: tokenString, PublicKey: priv.Public(), Name: name, Challenge: ch.Challenge, Proof: proof,
	})
	if err != nil {
		return out, err
	}
	url := base + wire.PathRegister
	b, err := exchange(ctx, hc, http.MethodPost, url, body)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("register at %s: bad answer: %w", url, err)
	}
	// The stream and the relay prove the key to CoordinatorKey; it must be
	// the key the registration proved it to.
	if out.CoordinatorKey != ch.CoordinatorKey {
		return out, fmt.Errorf("register at %s: bad answer: coordinator key %s differs from the %s it challenged with", url, out.CoordinatorKey.Short(), ch.CoordinatorKey.Short())
	}
	return out, nil
}

// registerChallenge fetches the challenge a registration answers.
func registerChallenge(ctx context.Context, hc *http.Client, url string) (wire.RegisterChallenge, error) {
	var ch wire.RegisterChallenge
	b, err := exchange(ctx, hc, http.MethodGet, url, nil)
	var re *RejectedError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		// Retried: the coordinator may be upgraded meanwhile.
		return ch, fmt.Errorf("register at %s: the coordinator is older than this node (it has no registration challenge); upgrade it: %w", url, err)
	}
	if err != nil {
		return ch, err
	}
	if err := json.Unmarshal(b, &ch); err != nil {
		return ch, fmt.Errorf("register at %s: bad answer: %w", url, err)
	}
	if len(ch.Challenge) == 0 || ch.CoordinatorKey.IsZero() {
		return ch, fmt.Errorf("register at %s: bad answer: no challenge or coordinator key", url)
	}
	return ch, nil
}

// exchange sends one control API request and returns the body of a 200
// answer; any other answer is the coordinator's RejectedError.
func exchange(ctx context.Context, hc *http.Client, method, url string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("register at %s: %w", url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("register at %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxRequestBody))
	if err != nil {
		return nil, fmt.Errorf("register at %s: read answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, rejected(resp.StatusCode, b)
	}
	return b, nil
}

func rejected(status int, body []byte) error {
	var er wire.ErrorResponse
	if json.Unmarshal(body, &er) != nil || er.Code == "" {
		return &RejectedError{Status: status, Code: wire.ErrCodeInternal, Reason: fmt.Sprintf("HTTP %d: %.200s", status, body)}
	}
	return &RejectedError{Status: status, Code: er.Code, Reason: er.Error}
}

// IsPermanent reports whether err is a refusal that retrying can't fix.
func IsPermanent(err error) bool {
	var re *RejectedError
	return errors.As(err, &re) && re.Permanent()
}
