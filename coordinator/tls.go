package coordinator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/atomicfile"
)

const (
	// certValidity is ten years: tokens and nodes pin this certificate
	// itself, so renewing it would strand every node and outstanding token.
	certValidity = 10 * 365 * 24 * time.Hour
	// certBackdate tolerates clients whose clock runs behind.
	certBackdate = time.Hour
	certMode     = 0o644
	certKeyMode  = 0o600
)

// loadCert returns the certificate to serve and its pin: tls_cert/tls_key
// when configured, else the self-signed one in data_dir, created on first
// use with host (the public URL's) among its names.
func loadCert(cfg config.Coordinator, host string) (tls.Certificate, string, error) {
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return c, "", fmt.Errorf("tls_cert %s with tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		return c, crypto.CertFingerprint(c.Certificate[0]), nil
	}
	certPath := filepath.Join(cfg.DataDir, certFile)
	keyPath := filepath.Join(cfg.DataDir, certKeyFile)
	// The certificate file is written last, so its absence means no pin
	// was ever handed out and a new pair may be made.
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := createSelfSigned(certPath, keyPath, host); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return c, "", fmt.Errorf("TLS certificate %s with key %s: %w (to start over, delete both; every node and token must then get the new pin)", certPath, keyPath, err)
	}
	return c, crypto.CertFingerprint(c.Certificate[0]), nil
}

func createSelfSigned(certPath, keyPath, host string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "meshnode coordinator"},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" && host != "localhost" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return fmt.Errorf("create TLS certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode TLS key: %w", err)
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), certKeyMode); err != nil {
		return err
	}
	// Whole or absent, never torn: the pin derived from the certificate
	// must never change behind the tokens' back.
	return atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certMode)
}
