package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// DefaultTokenExpiry is a day: long enough to carry a token to a new
// machine, short enough that a forgotten or leaked one soon stops working.
const DefaultTokenExpiry = 24 * time.Hour

// ErrNoPublicURL means tokens can't be made: nothing says where nodes dial.
var ErrNoPublicURL = errors.New("no public URL for join tokens: start the coordinator with --public-url https://HOST:PORT, the address nodes dial (while it is stopped, --public-url on this command works too)")

// RelayTag designates a node as a relay for the mesh. Only the
// administrator grants it (a join token's tags, or 'meshnode nodes tag'):
// every node sends its relayed traffic through the relay node it is
// offered, so a member that could name itself one could capture it.
const RelayTag = wire.TagRelay

// TokenOptions say what a new join token allows.
type TokenOptions struct {
	Reusable bool          `json:"reusable"`       // any number of nodes, until expiry or revocation
	Expiry   time.Duration `json:"expiry"`         // 0 means DefaultTokenExpiry
	Tags     []string      `json:"tags,omitempty"` // given to every node registered with it
	// URL is where the token's nodes dial, instead of the public URL:
	// another way to this coordinator, such as its IPv6 address for
	// machines without IPv4. Empty: the public URL.
	URL string `json:"url,omitempty"`
}

// Validate reports every bad option.
func (o TokenOptions) Validate() error {
	var errs []error
	if o.Expiry < 0 {
		errs = append(errs, fmt.Errorf("expiry %v is negative; give a duration such as 24h or 30m", o.Expiry))
	}
	errs = append(errs, ValidateTags(o.Tags))
	if o.URL != "" {
		if u, err := url.Parse(o.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("URL %q must be https://HOST:PORT, the address the token's nodes dial", o.URL))
		}
	}
	return errors.Join(errs...)
}

// ValidateTags reports every tag that is not a valid tag: tags name nodes
// in the access policy (tag:NAME), so they are short identifiers that
// read well there.
func ValidateTags(tags []string) error {
	var errs []error
	for _, t := range tags {
		if !policy.ValidTag(t) {
			errs = append(errs, fmt.Errorf("tag %q is not valid: use 1-63 lower-case letters, digits, '-', '_', '.' or ':', starting with a letter or digit", t))
		}
	}
	return errors.Join(errs...)
}

// TokenInfo describes a stored token; the secret is never shown again.
type TokenInfo struct {
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Reusable  bool      `json:"reusable"`
	Uses      int       `json:"uses"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Tags      []string  `json:"tags,omitempty"`
}

// issueToken creates and stores a token pointing at opts.URL, else at
// publicURL, with pin, and at the other coordinators sharing the database
// (shared), each with its own pin.
func issueToken(ctx context.Context, st store.Store, shared bool, publicURL, pin string, opts TokenOptions) (crypto.Token, error) {
	if err := opts.Validate(); err != nil {
		return crypto.Token{}, err
	}
	dial := publicURL
	if opts.URL != "" {
		dial = opts.URL
	}
	if dial == "" {
		return crypto.Token{}, ErrNoPublicURL
	}
	more, err := otherCoordinators(ctx, st, shared, crypto.Coordinator{URL: dial, Pin: pin})
	if err != nil {
		return crypto.Token{}, err
	}
	id, secret, err := crypto.NewTokenCredentials()
	if err != nil {
		return crypto.Token{}, err
	}
	expiry := opts.Expiry
	if expiry == 0 {
		expiry = DefaultTokenExpiry
	}
	now := time.Now()
	if err := st.CreateToken(ctx, store.Token{
		ID:         id,
		SecretHash: crypto.HashSecret(secret),
		Reusable:   opts.Reusable,
		Tags:       opts.Tags,
		Created:    now,
		Expires:    now.Add(expiry),
	}); err != nil {
		return crypto.Token{}, err
	}
	return crypto.Token{URL: dial, Pin: pin, More: more, ID: id, Secret: secret}, nil
}

func tokenInfos(ctx context.Context, st store.Store) ([]TokenInfo, error) {
	toks, err := st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, TokenInfo{
			ID:        t.ID,
			Created:   t.Created,
			Expires:   t.Expires,
			Reusable:  t.Reusable,
			Uses:      t.Uses,
			Revoked:   !t.Revoked.IsZero(),
			RevokedAt: t.Revoked,
			Tags:      t.Tags,
		})
	}
	return out, nil
}

// CreateToken creates a join token for this coordinator.
func (s *Server) CreateToken(ctx context.Context, opts TokenOptions) (crypto.Token, error) {
	tok, err := issueToken(ctx, s.store, s.shared, s.publicURL(), s.pin, opts)
	if err == nil {
		s.log.Info("join token created", "token", tok.ID, "reusable", opts.Reusable, "tags", opts.Tags, "coordinators", 1+len(tok.More))
	}
	return tok, err
}

// Tokens lists the join tokens, newest first.
func (s *Server) Tokens(ctx context.Context) ([]TokenInfo, error) { return tokenInfos(ctx, s.store) }

// RevokeToken revokes a join token; ErrNotFound if there is none.
func (s *Server) RevokeToken(ctx context.Context, id string) error {
	if err := s.store.RevokeToken(ctx, id, time.Now()); err != nil {
		return err
	}
	s.log.Info("join token revoked", "token", id)
	return nil
}
