package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/admit"
	"github.com/meshnode/meshnode/internal/wire"
)

// resultOK labels a successful registration in the metric; failures are
// labelled with their wire error code.
const resultOK = "ok"

// defaultNodeName stands in for a name with no usable character.
const defaultNodeName = "node"

// maxLabel is the longest DNS label (RFC 1035 §2.3.4).
const maxLabel = 63

// registerStoreTimeout bounds a registration's store transaction, which
// may wait busy_timeout (10 s) for the database lock, then commit.
const registerStoreTimeout = 30 * time.Second

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	// A registration never authenticates its connection (a proof of a key
	// anyone can make is no credential), so the connection stays under its
	// pre-authentication deadline; one request per connection keeps a
	// client from sending its next request on a connection that deadline
	// is about to close.
	w.Header().Set("Connection", "close")
	if r.ContentLength > wire.MaxRequestBody {
		s.registerFailed(w, http.StatusRequestEntityTooLarge, wire.ErrCodeBadRequest,
			fmt.Sprintf("request body of %d bytes is larger than the %d-byte limit", r.ContentLength, wire.MaxRequestBody))
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(requestBodyTimeout)) //nolint:errcheck // best effort
	var req wire.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBody)).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			s.registerFailed(w, http.StatusRequestEntityTooLarge, wire.ErrCodeBadRequest,
				fmt.Sprintf("request body is larger than the %d-byte limit", wire.MaxRequestBody))
		case errors.Is(err, io.EOF):
			s.registerFailed(w, http.StatusBadRequest, wire.ErrCodeBadRequest, "empty request body; send a JSON registration request")
		default:
			s.registerFailed(w, http.StatusBadRequest, wire.ErrCodeBadRequest, "malformed JSON: "+err.Error())
		}
		return
	}
	tok, err := crypto.ParseToken(req.Token)
	if err != nil {
		s.registerFailed(w, http.StatusBadRequest, wire.ErrCodeBadRequest, err.Error())
		return
	}
	if req.PublicKey.IsZero() {
		s.registerFailed(w, http.StatusBadRequest, wire.ErrCodeBadRequest, "public_key is missing")
		return
	}
	if !s.checkProof(w, req) {
		return
	}
	// The store's answer may take longer than the deadline (a synced
	// commit, a lock held by an admin command): the request got this far,
	// let it finish. The connection closes after the answer.
	admit.Extend(r.Context(), registerStoreTimeout)
	n, err := s.register(r.Context(), tok, req.PublicKey, dnsLabel(req.Name))
	if err != nil {
		status, code, text := registerError(err, req.PublicKey)
		if code == wire.ErrCodeInternal {
			s.log.Error("registration failed", "key", req.PublicKey.Short(), "err", err)
		}
		s.registerFailed(w, status, code, text)
		return
	}
	s.met.registrations.WithLabelValues(resultOK).Inc()
	s.log.Info("node registered", "node", n.Name, "key", n.Key.Short(), "ipv4", n.IPv4, "ipv6", n.IPv6, "token", tok.ID)
	writeJSON(w, http.StatusOK, wire.RegisterResponse{
		Self:           toWire(n, s.hub.online(n.Key)),
		CoordinatorKey: s.key.Public(),
		NetworkV4:      s.cfg.Network,
		NetworkV6:      s.cfg.NetworkV6,
	})
}

// checkProof checks that the node holds the private key of the key it
// registers, or answers why not. Without it, a token holder could register
// another node's public key and have its own tags, or a relay designation,
// applied to it.
func (s *Server) checkProof(w http.ResponseWriter, req wire.RegisterRequest) bool {
	switch {
	case len(req.Challenge) == 0 || len(req.Proof) == 0:
		s.registerFailed(w, http.StatusBadRequest, wire.ErrCodeBadRequest,
			"registration without challenge and proof: this meshnode is older than its coordinator, which wants proof of the node's key (GET "+wire.PathRegisterChallenge+" first); upgrade meshnode on this node")
	case s.challenges.check(req.Challenge, time.Now()) != nil:
		s.registerFailed(w, http.StatusUnauthorized, wire.ErrCodeChallengeExpired,
			"registration challenge expired or issued before the coordinator restarted; fetch a new one and register again")
	case !crypto.VerifyProof(s.key, req.PublicKey, wire.RegisterProofLabel, req.Challenge, req.Proof):
		s.registerFailed(w, http.StatusUnauthorized, wire.ErrCodeUnauthorized,
			"proof does not match public key "+req.PublicKey.Short()+": a node can only register a key whose private key it holds")
	default:
		return true
	}
	return false
}

// register commits the registration, then shows it to the mesh.
func (s *Server) register(ctx context.Context, tok crypto.Token, key crypto.PublicKey, name string) (store.Node, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.Register(ctx, store.Registration{
		TokenID: tok.ID,
		Secret:  tok.Secret,
		Key:     key,
		Name:    name,
		Pool:    s.pool,
		Now:     time.Now(),
	})
	if err != nil {
		return n, err
	}
	s.hub.upsert(n)
	return n, nil
}

// registerError maps a registration failure to its HTTP status, wire code
// and the text the node shows its user.
func registerError(err error, key crypto.PublicKey) (status int, code, text string) {
	switch {
	case errors.Is(err, store.ErrBanned):
		// node_removed is permanent for nodes: they stop retrying.
		return http.StatusForbidden, wire.ErrCodeNodeRemoved, removedText(key)
	case errors.Is(err, store.ErrTokenUnknown):
		return http.StatusUnauthorized, wire.ErrCodeTokenUnknown, "join token unknown to this coordinator (wrong coordinator, or a mistyped token); create one with 'meshnode token create'"
	case errors.Is(err, store.ErrTokenExpired):
		return http.StatusForbidden, wire.ErrCodeTokenExpired, "join token expired; create a new one with 'meshnode token create'"
	case errors.Is(err, store.ErrTokenUsed):
		return http.StatusForbidden, wire.ErrCodeTokenUsed, "join token already used (it is single-use); create a new one, or use --reusable for several nodes"
	case errors.Is(err, store.ErrTokenRevoked):
		return http.StatusForbidden, wire.ErrCodeTokenRevoked, "join token revoked; ask the coordinator's administrator for a new one"
	case errors.Is(err, store.ErrPoolExhausted):
		// 507: the server lacks room to store what was asked; retrying
		// won't help until an administrator frees or widens the pool.
		return http.StatusInsufficientStorage, wire.ErrCodePoolFull, err.Error()
	}
	return http.StatusInternalServerError, wire.ErrCodeInternal, "internal error; see the coordinator's log"
}

func (s *Server) registerFailed(w http.ResponseWriter, status int, code, text string) {
	s.met.registrations.WithLabelValues(code).Inc()
	writeJSON(w, status, wire.ErrorResponse{Code: code, Error: text})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

// dnsLabel turns a requested name into a DNS label (RFC 1035 §2.3.1, with
// RFC 1123's leading digits): lower-case letters, digits and inner hyphens,
// at most 63 characters. Every other run of characters becomes one hyphen.
func dnsLabel(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		if b.Len() >= maxLabel {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			hyphen = false
			continue
		}
		if !hyphen && b.Len() > 0 {
			b.WriteByte('-')
			hyphen = true
		}
	}
	if label := strings.Trim(b.String(), "-"); label != "" {
		return label
	}
	return defaultNodeName
}
