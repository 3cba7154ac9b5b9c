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

// Register presents a join token and this node's key and name.
func Register(ctx context.Context, hc *http.Client, tok crypto.Token, tokenString string, pub crypto.PublicKey, name string) (wire.RegisterResponse, error) {
	var out wire.RegisterResponse
	body, err := json.Marshal(wire.RegisterRequest{Token: tokenString, PublicKey: pub, Name: name})
	if err != nil {
		return out, err
	}
	url := strings.TrimSuffix(tok.URL, "/") + wire.PathRegister
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("register at %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("register at %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxRequestBody))
	if err != nil {
		return out, fmt.Errorf("register at %s: read answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, rejected(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("register at %s: bad answer: %w", url, err)
	}
	return out, nil
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
