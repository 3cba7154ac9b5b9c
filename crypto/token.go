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

// TokenPrefix starts every join token, so a pasted token is recognisable and
// a wrong string (a key, a URL) gets a precise error.
const TokenPrefix = "mntok1_"

// secretLen is 256 bits: a token secret must resist offline guessing even
// though the coordinator stores only its hash.
const secretLen = 32

// Token is a join token: everything a node needs to register. The URL says
// where the coordinator is, the pin which certificate it must present (so no
// CA is needed and no man in the middle gets in), and ID plus Secret
// authorise one registration (or several, for a reusable token).
type Token struct {
	URL    string `json:"u"`
	Pin    string `json:"p"` // hex SHA-256 of the coordinator's leaf certificate (DER)
	ID     string `json:"i"`
	Secret string `json:"s"`
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

// String encodes the token for the user to copy.
func (t Token) String() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic("crypto: marshal token: " + err.Error()) // only strings: cannot fail
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken decodes and checks a token. Its errors never echo the secret.
func ParseToken(s string) (Token, error) {
	var t Token
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, TokenPrefix) {
		return t, fmt.Errorf("join token must start with %q; copy the whole last line printed by 'meshnode token create'", TokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, TokenPrefix))
	if err != nil {
		return t, fmt.Errorf("join token is damaged (not base64url: %v); copy it again, whole", err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("join token is damaged (%v); copy it again, whole", err)
	}
	return t, t.validate()
}

func (t Token) validate() error {
	var errs []error
	u, err := url.Parse(t.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("join token: coordinator URL %q: %w", t.URL, err))
	case u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("join token: coordinator URL %q must be https://HOST:PORT; set the coordinator's --public-url and create a new token", t.URL))
	}
	if pin, err := hex.DecodeString(t.Pin); err != nil || len(pin) != sha256.Size {
		errs = append(errs, fmt.Errorf("join token: certificate pin %q is not a hex SHA-256", t.Pin))
	}
	if t.ID == "" || t.Secret == "" {
		errs = append(errs, errors.New("join token: missing ID or secret; create a new token"))
	}
	return errors.Join(errs...)
}
