package crypto

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// CertFingerprint is the hex SHA-256 of a certificate's DER bytes, the pin a
// join token carries.
func CertFingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// PinnedTLSConfig returns a client TLS config that accepts exactly the
// certificate whose fingerprint is pin. A self-signed coordinator needs no
// CA: trust comes from the token, as with SSH host keys.
func PinnedTLSConfig(pin string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Chain verification is replaced, not skipped: VerifyPeerCertificate
		// below accepts only the pinned certificate.
		InsecureSkipVerify: true, //nolint:gosec // pinned below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("coordinator presented no certificate")
			}
			got := CertFingerprint(raw[0])
			if subtle.ConstantTimeCompare([]byte(got), []byte(pin)) != 1 {
				return fmt.Errorf("coordinator certificate fingerprint %s does not match the token's pin %s: wrong coordinator, or its certificate changed (create a new token)", got, pin)
			}
			return nil
		},
	}
}
