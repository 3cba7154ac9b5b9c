package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

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

// Failed registrations per source (admit.Source: an IPv4 address or an
// IPv6 /64). A node rarely fails to register, and then stops (a bad token
// is permanent) or retries with backoff (a challenge from before a
// coordinator restart); a stranger guessing tokens fails at will. Past
// the burst, every attempt from the source is refused at once, before
// any check, until the budget refills: one failure regained every
// failedRegisterEvery. A source's successes cost nothing, so nodes behind
// one address register however many they are.
const (
	failedRegisterEvery   = 6 * time.Second
	failedRegisterBurst   = 30
	failedRegisterSources = 1 << 14 // the table's bound: about 2 MiB
)

func newFailedRegistrations() *admit.Budgets {
	return admit.NewBudgets(admit.BudgetLimits{
		Rate: rate.Every(failedRegisterEvery), Burst: failedRegisterBurst, Sources: failedRegisterSources,
	})
}

// refusal is a failed registration as the node is told it.
type refusal struct {
	status     int
	code, text string
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	// A registration never authenticates its connection (a proof of a key
	// anyone can make is no credential), so the connection stays under its
	// pre-authentication deadline; one request per connection keeps a
	// client from sending its next request on a connection that deadline
	// is about to close.
	w.Header().Set("Connection", "close")
	src := remoteIP(r)
	if s.failedRegs.Spent(src, time.Now()) {
		s.strangerLog.Info("registration refused: too many failed registrations from its source", "source", admit.Source(src))
		w.Header().Set("Retry-After", strconv.Itoa(int(failedRegisterEvery/time.Second)))
		s.registerFailed(w, refusal{http.StatusTooManyRequests, wire.ErrCodeRateLimited,
			fmt.Sprintf("too many failed registrations from %s; retry in %v", admit.Source(src), failedRegisterEvery)})
		return
	}
	resp, fail := s.registerRequest(w, r)
	if fail != nil {
		// The coordinator's own failures (5xx) are not the source's.
		if fail.status < http.StatusInternalServerError {
			s.failedRegs.Allow(src, time.Now())
		}
		s.registerFailed(w, *fail)
		return
	}
	s.met.registrations.WithLabelValues(resultOK).Inc()
	writeJSON(w, http.StatusOK, resp)
}

// remoteIP is the address a request came from; invalid if unparsable
// (admit.Source counts all those as one source).
func remoteIP(r *http.Request) netip.Addr {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap.Addr()
}

// registerRequest reads, checks and commits one registration.
func (s *Server) registerRequest(w http.ResponseWriter, r *http.Request) (wire.RegisterResponse, *refusal) {
	if r.ContentLength > wire.MaxRequestBody {
		return wire.RegisterResponse{}, &refusal{http.StatusRequestEntityTooLarge, wire.ErrCodeBadRequest,
			fmt.Sprintf("request body of %d bytes is larger than the %d-byte limit", r.ContentLength, wire.MaxRequestBody)}
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(requestBodyTimeout)) //nolint:errcheck // best effort
	var req wire.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBody)).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return wire.RegisterResponse{}, &refusal{http.StatusRequestEntityTooLarge, wire.ErrCodeBadRequest,
				fmt.Sprintf("request body is larger than the %d-byte limit", wire.MaxRequestBody)}
		case errors.Is(err, io.EOF):
			return wire.RegisterResponse{}, &refusal{http.StatusBadRequest, wire.ErrCodeBadRequest, "empty request body; send a JSON registration request"}
		default:
			return wire.RegisterResponse{}, &refusal{http.StatusBadRequest, wire.ErrCodeBadRequest, "malformed JSON: " + err.Error()}
		}
	}
	tok, err := crypto.ParseToken(req.Token)
	if err != nil {
		return wire.RegisterResponse{}, &refusal{http.StatusBadRequest, wire.ErrCodeBadRequest, err.Error()}
	}
	if req.PublicKey.IsZero() {
		return wire.RegisterResponse{}, &refusal{http.StatusBadRequest, wire.ErrCodeBadRequest, "public_key is missing"}
	}
	if fail := s.checkProof(req); fail != nil {
		return wire.RegisterResponse{}, fail
	}
	// The store's answer may take longer than the deadline (a synced
	// commit, a lock held by an admin command): the request got this far,
	// let it finish. The connection closes after the answer.
	admit.Extend(r.Context(), registerStoreTimeout)
	n, err := s.register(r.Context(), tok, req.PublicKey, dnsLabel(req.Name))
	if err != nil {
		fail := registerError(err, req.PublicKey)
		if fail.code == wire.ErrCodeInternal {
			s.log.Error("registration failed", "key", req.PublicKey.Short(), "err", err)
		}
		return wire.RegisterResponse{}, &fail
	}
	s.log.Info("node registered", "node", n.Name, "key", n.Key.Short(), "ipv4", n.IPv4, "ipv6", n.IPv6, "token", tok.ID)
	return wire.RegisterResponse{
		Self:           toWire(n, s.hub.online(n.Key)),
		CoordinatorKey: s.key.Public(),
		NetworkV4:      s.cfg.Network,
		NetworkV6:      s.cfg.NetworkV6,
	}, nil
}

// checkProof checks that the node holds the private key of the key it
// registers, or says why not. Without it, a token holder could register
// another node's public key and have its own tags, or a relay designation,
// applied to it.
func (s *Server) checkProof(req wire.RegisterRequest) *refusal {
	switch {
	case len(req.Challenge) == 0 || len(req.Proof) == 0:
		return &refusal{http.StatusBadRequest, wire.ErrCodeBadRequest,
			"registration without challenge and proof: this meshnode is older than its coordinator, which wants proof of the node's key (GET " + wire.PathRegisterChallenge + " first); upgrade meshnode on this node"}
	case s.challenges.check(req.Challenge, time.Now()) != nil:
		return &refusal{http.StatusUnauthorized, wire.ErrCodeChallengeExpired,
			"registration challenge expired or issued before the coordinator restarted; fetch a new one and register again"}
	case !crypto.VerifyProof(s.key, req.PublicKey, wire.RegisterProofLabel, req.Challenge, req.Proof):
		return &refusal{http.StatusUnauthorized, wire.ErrCodeUnauthorized,
			"proof does not match public key " + req.PublicKey.Short() + ": a node can only register a key whose private key it holds"}
	}
	return nil
}

// register commits the registration, then shows it to the mesh. The
// checks run first without the write lock: a refusal (a guessed token, a
// removed key) neither waits for nor takes it, so a stranger's guesses
// cost reads beside the writer and never hold up a real registration. A
// pass is checked again inside the write transaction, which alone
// consumes a single-use token.
func (s *Server) register(ctx context.Context, tok crypto.Token, key crypto.PublicKey, name string) (store.Node, error) {
	reg := store.Registration{
		TokenID: tok.ID,
		Secret:  tok.Secret,
		Key:     key,
		Name:    name,
		Pool:    s.pool,
		Now:     time.Now(),
	}
	if err := s.store.CheckRegistration(ctx, reg); err != nil {
		return store.Node{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.Register(ctx, reg)
	if err != nil {
		return n, err
	}
	s.hub.upsert(n, s.withNode(&n))
	return n, nil
}

// registerError maps a registration failure to its HTTP status, wire code
// and the text the node shows its user.
func registerError(err error, key crypto.PublicKey) refusal {
	switch {
	case errors.Is(err, store.ErrBanned):
		// node_removed is permanent for nodes: they stop retrying.
		return refusal{http.StatusForbidden, wire.ErrCodeNodeRemoved, removedText(key)}
	case errors.Is(err, store.ErrTokenUnknown):
		return refusal{http.StatusUnauthorized, wire.ErrCodeTokenUnknown, "join token unknown to this coordinator (wrong coordinator, or a mistyped token); create one with 'meshnode token create'"}
	case errors.Is(err, store.ErrTokenExpired):
		return refusal{http.StatusForbidden, wire.ErrCodeTokenExpired, "join token expired; create a new one with 'meshnode token create'"}
	case errors.Is(err, store.ErrTokenUsed):
		return refusal{http.StatusForbidden, wire.ErrCodeTokenUsed, "join token already used (it is single-use); create a new one, or use --reusable for several nodes"}
	case errors.Is(err, store.ErrTokenRevoked):
		return refusal{http.StatusForbidden, wire.ErrCodeTokenRevoked, "join token revoked; ask the coordinator's administrator for a new one"}
	case errors.Is(err, store.ErrPoolExhausted):
		// 507: the server lacks room to store what was asked; retrying
		// won't help until an administrator frees or widens the pool.
		return refusal{http.StatusInsufficientStorage, wire.ErrCodePoolFull, err.Error()}
	case errors.Is(err, store.ErrUnavailable):
		// Nothing was stored: the node's retry is safe, and needed.
		return refusal{http.StatusServiceUnavailable, wire.ErrCodeInternal, "the coordinator's database is unreachable; the node retries"}
	}
	return refusal{http.StatusInternalServerError, wire.ErrCodeInternal, "internal error; see the coordinator's log"}
}

func (s *Server) registerFailed(w http.ResponseWriter, f refusal) {
	s.met.registrations.WithLabelValues(f.code).Inc()
	writeJSON(w, f.status, wire.ErrorResponse{Code: f.code, Error: f.text})
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
