// Package crypto holds meshnode's key material and the small protocols built
// on it: node keys (Curve25519, shared with WireGuard), sealed discovery
// messages between two nodes, and join tokens.
package crypto

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/curve25519"

	"github.com/meshnode/meshnode/internal/atomicfile"
)

// KeyLen is the length of a Curve25519 key (RFC 7748 §5).
const KeyLen = 32

// PrivateKey is a node's static Curve25519 private key. The same key is the
// node's WireGuard identity; discovery sealing derives its own key from it
// with a distinct label, so the two uses never share a symmetric key.
type PrivateKey [KeyLen]byte

// PublicKey is a node's static Curve25519 public key, its identity in the mesh.
type PublicKey [KeyLen]byte

// NewPrivateKey returns a fresh clamped private key.
func NewPrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("generate private key: %w", err)
	}
	// Clamp as RFC 7748 §5 describes, the form wg(8) stores.
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public derives the public key.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	pub, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// X25519 with the base point fails only for an all-zero output,
		// impossible for a clamped scalar.
		panic("crypto: X25519 with the base point failed: " + err.Error())
	}
	copy(p[:], pub)
	return p
}

// IsZero reports whether the key is unset.
func (k PrivateKey) IsZero() bool { return k == PrivateKey{} }

// String is the base64 form, as wg(8) prints keys.
func (k PrivateKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is the form wireguard-go's UAPI takes.
func (k PrivateKey) Hex() string { return hex.EncodeToString(k[:]) }

// shared computes the X25519 shared secret with a peer.
func (k PrivateKey) shared(peer PublicKey) ([]byte, error) {
	s, err := curve25519.X25519(k[:], peer[:])
	if err != nil {
		return nil, fmt.Errorf("key agreement with %s: %w", peer.Short(), err)
	}
	return s, nil
}

// String is the base64 form.
func (p PublicKey) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// Hex is the form wireguard-go's UAPI takes.
func (p PublicKey) Hex() string { return hex.EncodeToString(p[:]) }

// Short is a log-friendly prefix of the base64 form.
func (p PublicKey) Short() string { return p.String()[:8] }

// IsZero reports whether the key is unset.
func (p PublicKey) IsZero() bool { return p == PublicKey{} }

// MarshalText encodes the key as base64, so keys read well in JSON.
func (p PublicKey) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the base64 form.
func (p *PublicKey) UnmarshalText(b []byte) error {
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*p = k
	return nil
}

// maxQuotedKey bounds how much of a bad public key an error quotes: a key
// is 44 characters, and a peer or a stranger (JSON bodies carry keys) must
// not get a megabyte echoed into a reply or a log.
const maxQuotedKey = 64

// ParsePublicKey parses a base64 public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	if err := decodeKey(s, p[:]); err != nil {
		q := s
		if len(q) > maxQuotedKey {
			q = q[:maxQuotedKey] + "..."
		}
		return p, fmt.Errorf("public key %q: %w", q, err)
	}
	return p, nil
}

// ParsePrivateKey parses a base64 private key.
func ParsePrivateKey(s string) (PrivateKey, error) {
	var k PrivateKey
	if err := decodeKey(s, k[:]); err != nil {
		// The key itself is secret: never echo it.
		return k, fmt.Errorf("private key: %w", err)
	}
	return k, nil
}

func decodeKey(s string, dst []byte) error {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("not base64: %w", err)
	}
	if len(b) != KeyLen {
		return fmt.Errorf("want %d bytes, got %d", KeyLen, len(b))
	}
	copy(dst, b)
	return nil
}

// privateKeyMode keeps the key file readable by its owner only.
const privateKeyMode = 0o600

// LoadOrCreatePrivateKey reads the key at path or, when the file doesn't
// exist, creates it. It refuses a key file that others can read, as ssh does.
func LoadOrCreatePrivateKey(path string) (PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := NewPrivateKey()
		if err != nil {
			return k, err
		}
		if err := atomicfile.Write(path, []byte(k.String()+"\n"), privateKeyMode); err != nil {
			return k, fmt.Errorf("private key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read private key %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("stat private key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("private key %s has mode %v: others can read it; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	k, err := ParsePrivateKey(string(b))
	if err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
