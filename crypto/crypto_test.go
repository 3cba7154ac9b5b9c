package crypto

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustKey(t *testing.T) PrivateKey {
	t.Helper()
	k, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyEncodings(t *testing.T) {
	k := mustKey(t)
	p, err := ParsePublicKey(k.Public().String())
	if err != nil || p != k.Public() {
		t.Fatalf("public key round trip: %v", err)
	}
	q, err := ParsePrivateKey(k.String())
	if err != nil || q != k {
		t.Fatalf("private key round trip: %v", err)
	}
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if _, err := ParsePrivateKey("secretbutbroken!"); err == nil || strings.Contains(err.Error(), "secretbutbroken") {
		t.Errorf("a bad private key must fail without echoing it: %v", err)
	}
}

func TestLoadOrCreatePrivateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.key")
	k1, err := LoadOrCreatePrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrCreatePrivateKey(path)
	if err != nil || k1 != k2 {
		t.Fatalf("reload gave another key (%v)", err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreatePrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key must be refused with advice, got %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	a, b, c := mustKey(t), mustKey(t), mustKey(t)
	sa, sb, sc := NewSealer(a), NewSealer(b), NewSealer(c)
	hdr := []byte("hdr")
	msg, err := sa.Seal(nil, hdr, b.Public(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	from, plain, err := sb.Open(hdr, msg)
	if err != nil || from != a.Public() || string(plain) != "hello" {
		t.Fatalf("Open = %v, %q, %v", from, plain, err)
	}
	tampered := func(f func([]byte)) []byte { m := bytes.Clone(msg); f(m); return m }
	for _, tc := range []struct {
		name   string
		opener *Sealer
		hdr    []byte
		msg    []byte
		want   error
	}{
		{"replay", sb, hdr, msg, ErrReplay},
		{"wrong receiver", sc, hdr, msg, ErrAuth},
		{"other header", sb, []byte("HDR"), msg, ErrAuth},
		{"flipped byte", sb, hdr, tampered(func(m []byte) { m[len(m)-1] ^= 1 }), ErrAuth},
		{"forged sender", sb, hdr, tampered(func(m []byte) { copy(m, c.Public().String()) }), ErrAuth},
		{"short", sb, hdr, msg[:10], ErrShort},
		{"own key", sa, hdr, msg, ErrSelfSent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := tc.opener.Open(tc.hdr, tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	// Messages reordered within the window still open once each.
	m1, _ := sa.Seal(nil, hdr, b.Public(), []byte("1"))
	m2, _ := sa.Seal(nil, hdr, b.Public(), []byte("2"))
	if _, _, err := sb.Open(hdr, m2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sb.Open(hdr, m1); err != nil {
		t.Fatalf("reordered message rejected: %v", err)
	}
}

func TestProof(t *testing.T) {
	node, coord, other := mustKey(t), mustKey(t), mustKey(t)
	ch := []byte("challenge")
	p, err := Proof(node, coord.Public(), "stream", ch)
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyProof(coord, node.Public(), "stream", ch, p) {
		t.Fatal("valid proof rejected")
	}
	if VerifyProof(coord, other.Public(), "stream", ch, p) {
		t.Fatal("proof accepted for another key")
	}
	if VerifyProof(coord, node.Public(), "relay", ch, p) {
		t.Fatal("proof accepted under another label")
	}
	if VerifyProof(coord, node.Public(), "stream", []byte("other"), p) {
		t.Fatal("proof accepted for another challenge")
	}
}

func TestTokens(t *testing.T) {
	id, secret, err := NewTokenCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pinA, pinB := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	one := Token{URL: "https://198.18.0.1:8443", Pin: pinA, ID: id, Secret: secret}
	two := Token{URL: one.URL, Pin: pinA, More: []Coordinator{{URL: "https://[2001:2::5]:8443", Pin: pinB}}, ID: id, Secret: secret}
	// multi encodes a token in the second format as given, so that bad
	// lists can be written.
	multi := func(list []Coordinator, id, secret string) string {
		b, err := json.Marshal(multiToken{Coordinators: list, ID: id, Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		return TokenPrefixMulti + base64.RawURLEncoding.EncodeToString(b)
	}
	many := make([]Coordinator, MaxTokenCoordinators+1)
	for i := range many {
		many[i] = Coordinator{URL: fmt.Sprintf("https://c%d.example:8443", i), Pin: pinA}
	}
	for _, tc := range []struct {
		name, prefix string
		tok          Token
	}{
		{"one coordinator: the first format, which older nodes read", TokenPrefix, one},
		{"two coordinators: the second format", TokenPrefixMulti, two},
		{"the most coordinators allowed", TokenPrefixMulti, Token{URL: many[0].URL, Pin: pinA, More: many[1:MaxTokenCoordinators], ID: id, Secret: secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.tok.String()
			if !strings.HasPrefix(s, tc.prefix) {
				t.Fatalf("token %s does not start with %s", s, tc.prefix)
			}
			got, err := ParseToken("  " + s + "\n")
			if err != nil || !reflect.DeepEqual(got, tc.tok) {
				t.Fatalf("round trip: %+v, %v; want %+v", got, err, tc.tok)
			}
			if !reflect.DeepEqual(got.Coordinators(), append([]Coordinator{{URL: tc.tok.URL, Pin: tc.tok.Pin}}, tc.tok.More...)) {
				t.Fatalf("coordinators %+v", got.Coordinators())
			}
		})
	}
	// A token made before several coordinators existed still parses.
	old := TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(`{"u":"https://198.18.0.1:8443","p":"`+pinA+`","i":"`+id+`","s":"`+secret+`"}`))
	if got, err := ParseToken(old); err != nil || !reflect.DeepEqual(got, one) {
		t.Fatalf("old token: %+v, %v; want %+v", got, err, one)
	}
	if !SecretMatches(secret, HashSecret(secret)) || SecretMatches(secret+"x", HashSecret(secret)) {
		t.Fatal("secret hash comparison wrong")
	}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"no prefix", "abc", "must start with"},
		{"damaged", TokenPrefix + "%%%", "damaged"},
		{"damaged, second format", TokenPrefixMulti + "%%%", "damaged"},
		{"not JSON, second format", TokenPrefixMulti + base64.RawURLEncoding.EncodeToString([]byte("[1]")), "damaged"},
		{"http url", Token{URL: "http://x:1", Pin: one.Pin, ID: "i", Secret: "s"}.String(), "must be https"},
		{"bad pin", Token{URL: one.URL, Pin: "zz", ID: "i", Secret: "s"}.String(), "certificate pin"},
		{"no secret", Token{URL: one.URL, Pin: one.Pin}.String(), "missing ID or secret"},
		{"no coordinator", multi(nil, id, secret), "names no coordinator"},
		{"second coordinator not https", multi([]Coordinator{{one.URL, pinA}, {"http://b:1", pinB}}, id, secret), `coordinator 2: coordinator URL "http://b:1" must be https`},
		{"second coordinator's pin bad", multi([]Coordinator{{one.URL, pinA}, {"https://b:1", "ab"}}, id, secret), `coordinator 2: certificate pin "ab"`},
		{"a URL twice", multi([]Coordinator{{one.URL, pinA}, {one.URL, pinB}}, id, secret), "listed twice"},
		{"too many coordinators", multi(many, id, secret), "more than the 16 allowed"},
		{"no secret, second format", multi(two.Coordinators(), id, ""), "missing ID or secret"},
		{"too long", TokenPrefixMulti + strings.Repeat("A", maxTokenLen), "more than the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.token)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to contain %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatal("the error echoes the secret")
			}
		})
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestPinnedTLS(t *testing.T) {
	cert := selfSigned(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	get := func(pin string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: PinnedTLSConfig(pin)}}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(CertFingerprint(cert.Certificate[0])); err != nil {
		t.Fatalf("pinned certificate refused: %v", err)
	}
	if err := get(strings.Repeat("00", 32)); err == nil || !strings.Contains(err.Error(), "does not match the token's pin") {
		t.Fatalf("another certificate accepted or unclear error: %v", err)
	}
}
