package crypto

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The seed corpora in testdata/fuzz were built with this package's
// encoders: messages sealed by fuzzSender to fuzzReceiver, Token.String,
// and the key encodings.

// fixedKey is a deterministic private key, so that sealed seeds in the
// corpus open in every run.
func fixedKey(seed byte) PrivateKey {
	var k PrivateKey
	for i := range k {
		k[i] = seed + byte(i)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

var (
	fuzzSender   = fixedKey(1)
	fuzzReceiver = fixedKey(101)
)

// FuzzOpen feeds arbitrary bytes to Open, as a stranger on the internet
// can. Whatever fails leaves no state behind (a stranger must not grow the
// Sealer's tables, one X25519 key per packet); whatever opens came from
// another key, is as long as the sealed form says, and opens only once.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, header, sealed []byte) {
		s := NewSealer(fuzzReceiver)
		from, plain, err := s.Open(header, sealed)
		if err != nil {
			switch {
			case len(sealed) < SealOverhead && !errors.Is(err, ErrShort):
				t.Fatalf("%d-byte message: %v, want ErrShort", len(sealed), err)
			case len(sealed) >= SealOverhead && from == s.Public() && !errors.Is(err, ErrSelfSent):
				t.Fatalf("message claiming this node's key: %v, want ErrSelfSent", err)
			}
			if n, m := len(s.aeads), len(s.replay); n != 0 || m != 0 {
				t.Fatalf("a message that failed (%v) left state for %s: %d ciphers, %d replay windows", err, from.Short(), n, m)
			}
			return
		}
		if from == s.Public() {
			t.Fatal("opened a message claiming to come from this node")
		}
		if len(plain) != len(sealed)-SealOverhead {
			t.Fatalf("%d-byte sealed message gave %d bytes of plaintext, want %d", len(sealed), len(plain), len(sealed)-SealOverhead)
		}
		if _, _, err := s.Open(header, sealed); !errors.Is(err, ErrReplay) {
			t.Fatalf("the same message opened twice: %v, want ErrReplay", err)
		}
		if len(s.aeads) != 1 || len(s.replay) != 1 {
			t.Fatalf("one sender left %d ciphers and %d replay windows", len(s.aeads), len(s.replay))
		}
	})
}

// FuzzSealOpen seals any plaintext under any header and checks that the
// receiver gets it back from the sender, once; that a change of any one
// byte of the sealed message, or of the header, fails authentication; and
// that nobody else can open it.
func FuzzSealOpen(f *testing.F) {
	sender, receiver, other := NewSealer(fuzzSender), NewSealer(fuzzReceiver), NewSealer(fixedKey(201))
	f.Fuzz(func(t *testing.T, header, plaintext []byte, flip uint16) {
		msg, err := sender.Seal([]byte("dst"), header, receiver.Public(), plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(msg, []byte("dst")) || len(msg) != len("dst")+len(plaintext)+SealOverhead {
			t.Fatalf("Seal of %d bytes appended %d bytes, want %d", len(plaintext), len(msg)-len("dst"), len(plaintext)+SealOverhead)
		}
		msg = msg[len("dst"):]
		if _, _, err := other.Open(header, msg); !errors.Is(err, ErrAuth) {
			t.Fatalf("a third key opened the message: %v", err)
		}
		tampered := bytes.Clone(msg)
		tampered[int(flip)%len(tampered)] ^= 1 << (flip % 8)
		if _, _, err := receiver.Open(header, tampered); err == nil {
			t.Fatalf("byte %d flipped, still opens", int(flip)%len(tampered))
		}
		if _, _, err := receiver.Open(append(bytes.Clone(header), 0), msg); !errors.Is(err, ErrAuth) {
			t.Fatalf("opened under another header: %v", err)
		}
		from, got, err := receiver.Open(header, msg)
		if err != nil || from != sender.Public() || !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %s, %x, %v; want %s, %x", from.Short(), got, err, sender.Public().Short(), plaintext)
		}
		if _, _, err := receiver.Open(header, msg); !errors.Is(err, ErrReplay) {
			t.Fatalf("opened twice: %v", err)
		}
	})
}

// FuzzParseToken checks that an accepted token has everything a node needs
// (an https URL with a host, a SHA-256 pin, an ID and a secret) and encodes
// to a string that parses to the same token, and that no error quotes the
// secret.
func FuzzParseToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if secret := secretIn(s); len(secret) >= 8 && !quotedAsCoordinator(tok, secret) &&
				strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q quotes the secret %q", err, secret)
			}
			return
		}
		for _, c := range tok.Coordinators() {
			u, err := url.Parse(c.URL)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				t.Fatalf("accepted coordinator URL %q (%v)", c.URL, err)
			}
			if pin, err := hex.DecodeString(c.Pin); err != nil || len(pin) != 32 {
				t.Fatalf("accepted pin %q", c.Pin)
			}
		}
		if tok.ID == "" || tok.Secret == "" {
			t.Fatalf("accepted a token without ID or secret: %+v", tok)
		}
		back, err := ParseToken(tok.String())
		if err != nil || !reflect.DeepEqual(back, tok) {
			t.Fatalf("round trip of %+v: %+v, %v", tok, back, err)
		}
	})
}

// quotedAsCoordinator reports whether secret is part of a coordinator's
// URL or pin, which errors may quote.
func quotedAsCoordinator(tok Token, secret string) bool {
	for _, c := range tok.Coordinators() {
		if strings.Contains(c.URL, secret) || strings.Contains(c.Pin, secret) {
			return true
		}
	}
	return false
}

// secretIn is the secret a token string carries, as ParseToken decodes it,
// or "" when it has none.
func secretIn(s string) string {
	s = strings.TrimSpace(s)
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(strings.TrimPrefix(s, TokenPrefix), TokenPrefixMulti))
	if err != nil {
		return ""
	}
	var tok struct {
		Secret string `json:"s"`
	}
	json.Unmarshal(b, &tok) //nolint:errcheck // a partial decode still names the secret
	return tok.Secret
}

// FuzzParseKey checks both key parsers: an accepted key is the base64 of its
// 32 bytes and prints in a form that parses to the same key; a rejected
// private key's error never quotes it, and a rejected public key's error
// quotes a bounded amount of it.
func FuzzParseKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		trimmed := strings.TrimSpace(s)
		pub, err := ParsePublicKey(s)
		if err == nil {
			if raw, derr := base64.StdEncoding.DecodeString(trimmed); derr != nil || !bytes.Equal(raw, pub[:]) {
				t.Fatalf("ParsePublicKey(%q) = %x, not its base64", s, pub)
			}
			if back, err := ParsePublicKey(pub.String()); err != nil || back != pub {
				t.Fatalf("round trip of %x: %x, %v", pub, back, err)
			}
		} else if len(err.Error()) > 4*maxQuotedKey+100 {
			t.Fatalf("a %d-byte bad public key gave a %d-byte error", len(s), len(err.Error()))
		}
		priv, err := ParsePrivateKey(s)
		if err == nil {
			if raw, derr := base64.StdEncoding.DecodeString(trimmed); derr != nil || !bytes.Equal(raw, priv[:]) {
				t.Fatal("ParsePrivateKey accepted something that is not the base64 of the key")
			}
			if back, err := ParsePrivateKey(priv.String()); err != nil || back != priv {
				t.Fatalf("private key round trip: %v", err)
			}
			if pub, err := ParsePublicKey(s); err != nil || pub != PublicKey(priv) {
				t.Fatal("the two parsers disagree on the same 32 bytes")
			}
			return
		}
		// Long enough and without spaces, the input can't be a word of the
		// error's own text.
		if len(trimmed) >= 12 && !strings.ContainsAny(trimmed, " \t") && strings.Contains(err.Error(), trimmed) {
			t.Fatalf("the error %q quotes the private key", err)
		}
	})
}

// FuzzLoadPrivateKey writes arbitrary bytes as a key file. A file others
// can read is refused whatever it holds; a key is loaded only from a file
// that parses; an existing file is never rewritten (a damaged key file
// must not be silently replaced by a new identity); an error names the
// file and never quotes its content.
func FuzzLoadPrivateKey(f *testing.F) {
	path := filepath.Join(f.TempDir(), "private.key")
	f.Fuzz(func(t *testing.T, content []byte, othersCanRead bool) {
		mode := os.FileMode(0o600)
		if othersCanRead {
			mode = 0o644
		}
		if err := os.WriteFile(path, content, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		k, err := LoadOrCreatePrivateKey(path)
		after, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(after, content) {
			t.Fatalf("LoadOrCreatePrivateKey rewrote an existing key file (%v)", rerr)
		}
		if othersCanRead {
			if err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("a key file with mode %v: %v, want a refusal with advice", mode, err)
			}
			return
		}
		if err != nil {
			msg := strings.ReplaceAll(err.Error(), path, "")
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			if trimmed := strings.TrimSpace(string(content)); len(trimmed) >= 12 && !strings.ContainsAny(trimmed, " \t\n") && strings.Contains(msg, trimmed) {
				t.Fatalf("error %q quotes the key file's content", err)
			}
			return
		}
		if want, perr := ParsePrivateKey(string(content)); perr != nil || want != k {
			t.Fatalf("loaded %s from a file that parses as %v", k.Public().Short(), perr)
		}
	})
}
