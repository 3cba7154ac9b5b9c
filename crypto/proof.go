package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
)

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// VerifyProof checks a Proof made by the holder of prover's private key for
// the verifier holding priv. It compares in constant time.
func VerifyProof(priv PrivateKey, prover PublicKey, label string, challenge, proof []byte) bool {
	want, err := Proof(priv, prover, label, challenge)
	if err != nil {
		return false
	}
	return hmac.Equal(want, proof)
}
