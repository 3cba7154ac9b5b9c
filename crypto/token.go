package crypto

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// TokenPrefix starts a join token that names one coordinator, the format
// every node version reads; TokenPrefixMulti one that names several (a
// mesh of coordinators sharing a database). A token is written in the
// first format whenever it names one coordinator, so older nodes can
// still join with it. A pasted token is recognisable by its prefix, and a
// wrong string (a key, a URL) gets a precise error.
const (
	TokenPrefix      = "mntok1_"
	TokenPrefixMulti = "mntok2_"
)

// MaxTokenCoordinators bounds the coordinators one token (and one
// welcome) names: a mesh runs a handful, and a hostile or damaged token
// must not make a node dial thousands of addresses.
const MaxTokenCoordinators = 16

// secretLen is 256 bits: a token secret must resist offline guessing even
// though the coordinator stores only its hash.
const secretLen = 32

// Coordinator is one coordinator a node may dial: its https URL and the
// pin of its own certificate (each coordinator keeps its own, so adding
// one never changes the pins tokens already carry).
type Coordinator struct {
	URL string `json:"u"`
	Pin string `json:"p"` // hex SHA-256 of the coordinator's leaf certificate (DER)
}

// Validate checks that c can be dialled and pinned.
func (c Coordinator) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("coordinator URL %q: %w", c.URL, err))
	case u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("coordinator URL %q must be https://HOST:PORT; set the coordinator's --public-url and create a new token", c.URL))
	}
	if pin, err := hex.DecodeString(c.Pin); err != nil || len(pin) != sha256.Size {
		errs = append(errs, fmt.Errorf("certificate pin %q of %q is not a hex SHA-256", c.Pin, c.URL))
	}
	return errors.Join(errs...)
}

// ValidateCoordinators checks a list of coordinators, from a token or a
// welcome: at least one, at most MaxTokenCoordinators, each valid, no URL
// twice.
func ValidateCoordinators(list []Coordinator) error {
	switch {
	case len(list) == 0:
		return errors.New("no coordinator")
	case len(list) > MaxTokenCoordinators:
		return fmt.Errorf("%d coordinators, more than the %d allowed", len(list), MaxTokenCoordinators)
	}
	var errs []error
	seen := make(map[string]bool, len(list))
	for i, c := range list {
		if err := c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("coordinator %d: %w", i+1, err))
		}
		if seen[c.URL] {
			errs = append(errs, fmt.Errorf("coordinator %d: URL %q listed twice", i+1, c.URL))
		}
		seen[c.URL] = true
	}
	return errors.Join(errs...)
}

// Token is a join token: everything a node needs to register. URL and Pin
// say where a coordinator is and which certificate it must present (so no
// CA is needed and no man in the middle gets in); More are the mesh's
// other coordinators, each with its own pin, which the node tries when
// that one is down. ID plus Secret authorise one registration (or
// several, for a reusable token) at any of them: they share the database.
type Token struct {
	URL    string        `json:"u"`
	Pin    string        `json:"p"` // hex SHA-256 of the coordinator's leaf certificate (DER)
	More   []Coordinator `json:"-"`
	ID     string        `json:"i"`
	Secret string        `json:"s"`
}

// multiToken is the encoding of a token that names several coordinators.
type multiToken struct {
	Coordinators []Coordinator `json:"c"`
	ID           string        `json:"i"`
	Secret       string        `json:"s"`
}

// Coordinators lists every coordinator the token names, URL first.
func (t Token) Coordinators() []Coordinator {
	return append([]Coordinator{{URL: t.URL, Pin: t.Pin}}, t.More...)
}

// NewTokenCredentials returns a fresh token ID and secret.
func NewTokenCredentials() (id, secret string, err error) {
	b := make([]byte, 6+secretLen)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b[:6]), base64.RawURLEncoding.EncodeToString(b[6:]), nil
}

// HashSecret is the form a coordinator stores: a plain SHA-256 suffices for a
// 256-bit random secret (no dictionary to slow down).
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SecretMatches compares a presented secret with a stored hash in constant time.
func SecretMatches(secret, storedHash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(storedHash)) == 1
}

// String encodes the token for the user to copy: in the first format
// when it names one coordinator, else in the second.
func (t Token) String() string {
	var v any = t
	prefix := TokenPrefix
	if len(t.More) > 0 {
		v, prefix = multiToken{Coordinators: t.Coordinators(), ID: t.ID, Secret: t.Secret}, TokenPrefixMulti
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("crypto: marshal token: " + err.Error()) // only strings: cannot fail
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// maxTokenLen bounds a token string before it is decoded: the longest
// valid one (MaxTokenCoordinators long URLs) is a few kilobytes.
const maxTokenLen = 16 << 10

// ParseToken decodes and checks a token in either format. Its errors never
// echo the secret.
func ParseToken(s string) (Token, error) {
	var t Token
	s = strings.TrimSpace(s)
	var prefix string
	switch {
	case strings.HasPrefix(s, TokenPrefix):
		prefix = TokenPrefix
	case strings.HasPrefix(s, TokenPrefixMulti):
		prefix = TokenPrefixMulti
	default:
		return t, fmt.Errorf("join token must start with %q or %q; copy the whole last line printed by 'meshnode token create'", TokenPrefix, TokenPrefixMulti)
	}
	if len(s) > maxTokenLen {
		return t, fmt.Errorf("join token is %d bytes, more than the %d a token can be; copy the last line printed by 'meshnode token create', alone", len(s), maxTokenLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, prefix))
	if err != nil {
		return t, fmt.Errorf("join token is damaged (not base64url: %v); copy it again, whole", err)
	}
	if prefix == TokenPrefix {
		if err := json.Unmarshal(b, &t); err != nil {
			return t, fmt.Errorf("join token is damaged (%v); copy it again, whole", err)
		}
		return t, t.validate()
	}
	var m multiToken
	if err := json.Unmarshal(b, &m); err != nil {
		return t, fmt.Errorf("join token is damaged (%v); copy it again, whole", err)
	}
	t.ID, t.Secret = m.ID, m.Secret
	if len(m.Coordinators) > 0 {
		t.URL, t.Pin, t.More = m.Coordinators[0].URL, m.Coordinators[0].Pin, m.Coordinators[1:]
	}
	if len(t.More) == 0 {
		t.More = nil
	}
	if len(m.Coordinators) == 0 {
		return t, errors.Join(errors.New("join token: names no coordinator; create a new token"), t.validateSecret())
	}
	return t, t.validate()
}

func (t Token) validate() error {
	var errs []error
	if err := ValidateCoordinators(t.Coordinators()); err != nil {
		errs = append(errs, fmt.Errorf("join token: %w", err))
	}
	return errors.Join(append(errs, t.validateSecret())...)
}

func (t Token) validateSecret() error {
	if t.ID == "" || t.Secret == "" {
		return errors.New("join token: missing ID or secret; create a new token")
	}
	return nil
}
