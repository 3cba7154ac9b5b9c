package crypto

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/replay"
)

// Sealed message layout, after any caller-chosen header (bound as additional
// data):
//
//	sender public key (32) | nonce (24) | XChaCha20-Poly1305(counter (8) | plaintext)
//
// XChaCha20's 24-byte random nonce makes nonce reuse negligible without
// per-peer nonce state. The counter, strictly increasing per sender and seeded
// from the clock so it keeps growing across restarts, feeds a sliding replay
// window (wireguard-go's, RFC 6479) at the receiver.
const (
	nonceLen   = chacha20poly1305.NonceSizeX
	counterLen = 8
	// SealOverhead is what Seal adds to a plaintext.
	SealOverhead = KeyLen + nonceLen + counterLen + chacha20poly1305.Overhead
)

// sealLabel separates the discovery key from WireGuard's use of the same
// Curve25519 pair (HKDF info, RFC 5869 §3.2).
const sealLabel = "meshnode discovery v1"

// Errors from Open. Callers count them; none is fatal.
var (
	ErrShort    = errors.New("sealed message too short")
	ErrAuth     = errors.New("sealed message failed authentication")
	ErrReplay   = errors.New("sealed message replayed or too old")
	ErrSelfSent = errors.New("sealed message claims to come from this node")
)

// Sealer seals messages from this node to a peer and opens messages from
// peers. It is safe for concurrent use.
type Sealer struct {
	priv    PrivateKey
	pub     PublicKey
	counter atomic.Uint64

	mu     sync.Mutex
	aeads  map[PublicKey]cipher.AEAD
	replay map[PublicKey]*replay.Filter
}

// NewSealer returns a Sealer for the node holding priv.
func NewSealer(priv PrivateKey) *Sealer {
	s := &Sealer{
		priv:   priv,
		pub:    priv.Public(),
		aeads:  make(map[PublicKey]cipher.AEAD),
		replay: make(map[PublicKey]*replay.Filter),
	}
	s.counter.Store(uint64(time.Now().UnixNano()))
	return s
}

// Public is this node's public key.
func (s *Sealer) Public() PublicKey { return s.pub }

// aead returns the cipher for a peer this node seals to, derived once and
// then kept.
func (s *Sealer) aead(peer PublicKey) (cipher.AEAD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.aeads[peer]; ok {
		return a, nil
	}
	a, err := s.derive(peer)
	if err != nil {
		return nil, err
	}
	s.aeads[peer] = a
	return a, nil
}

// derive computes the cipher shared with peer; s.mu need not be held.
func (s *Sealer) derive(peer PublicKey) (cipher.AEAD, error) {
	secret, err := s.priv.shared(peer)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, secret, nil, sealLabel, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive discovery key: %w", err)
	}
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("discovery cipher: %w", err)
	}
	return a, nil
}

// Seal appends the sealed form of plaintext for peer to dst. header is
// authenticated but not encrypted; the caller sends it before the result.
func (s *Sealer) Seal(dst, header []byte, to PublicKey, plaintext []byte) ([]byte, error) {
	a, err := s.aead(to)
	if err != nil {
		return nil, err
	}
	start := len(dst)
	dst = append(dst, s.pub[:]...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	dst = append(dst, nonce...)
	msg := make([]byte, counterLen, counterLen+len(plaintext))
	binary.BigEndian.PutUint64(msg, s.counter.Add(1))
	msg = append(msg, plaintext...)
	ad := append(append([]byte{}, header...), dst[start:start+KeyLen]...)
	return a.Seal(dst, nonce, msg, ad), nil
}

// Open authenticates a message made by Seal, rejects replays, and returns
// the sender and the plaintext. header must be what the sender bound.
func (s *Sealer) Open(header, sealed []byte) (PublicKey, []byte, error) {
	var from PublicKey
	if len(sealed) < SealOverhead {
		return from, nil, ErrShort
	}
	copy(from[:], sealed[:KeyLen])
	if from == s.pub {
		return from, nil, ErrSelfSent
	}
	// Anyone can claim any sender key, so a cipher derived for a new one
	// is kept only once the message authenticates: forged packets must
	// not grow this node's tables. Whether an authenticated sender is a
	// peer is the caller's to check (and Forget).
	s.mu.Lock()
	a, known := s.aeads[from]
	s.mu.Unlock()
	if !known {
		var err error
		if a, err = s.derive(from); err != nil {
			return from, nil, err
		}
	}
	nonce := sealed[KeyLen : KeyLen+nonceLen]
	ad := append(append([]byte{}, header...), sealed[:KeyLen]...)
	msg, err := a.Open(nil, nonce, sealed[KeyLen+nonceLen:], ad)
	if err != nil {
		return from, nil, ErrAuth
	}
	counter := binary.BigEndian.Uint64(msg[:counterLen])
	s.mu.Lock()
	if _, ok := s.aeads[from]; !ok {
		s.aeads[from] = a
	}
	f, ok := s.replay[from]
	if !ok {
		f = new(replay.Filter)
		s.replay[from] = f
	}
	fresh := f.ValidateCounter(counter, ^uint64(0))
	s.mu.Unlock()
	if !fresh {
		return from, nil, ErrReplay
	}
	return from, msg[counterLen:], nil
}

// Len is how many keys the sealer holds state for (ciphers and replay
// windows): its peers, and nobody else.
func (s *Sealer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.aeads), len(s.replay))
}

// Forget drops the state kept for a peer that left the mesh.
func (s *Sealer) Forget(peer PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.aeads, peer)
	delete(s.replay, peer)
}

// Proof is what a node sends to prove it holds the private key for its
// public key: an HMAC, keyed by the X25519 secret it shares with the
// verifier, over a challenge the verifier chose. Only the two key holders can
// compute it, and nothing in it works as a bearer secret elsewhere.
func Proof(priv PrivateKey, verifier PublicKey, label string, challenge []byte) ([]byte, error) {
	secret, err := priv.shared(verifier)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "meshnode proof v1 "+label, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive proof key: %w", err)
	}
	return hmacSHA256(key, challenge), nil
}
