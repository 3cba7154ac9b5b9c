package tcppunch

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/meshnode/meshnode/crypto"
)

// The handshake on every candidate connection, before any data frame:
//
//	both:    hello = helloMagic (4) | version (1) | key (32) | challenge (32)
//	both:    proof (32) = Proof(priv, peer, "tcp-punch", their challenge | own key)
//	chooser: msgUse (1)   this connection is the path
//	other:   msgAck (1)   agreed
//
// Both ends write before they read, so neither waits on the other; a
// Listener reads an accepted connection's hello first, to route it.
// Simultaneous open and a listener on the same port can leave two
// authenticated connections between the same nodes (one dialed by each
// side, when their source addresses differ from the mappings they
// punched); the chooser, the node with the lower key, picks one and the
// other node follows it.

// helloMagic starts a hello, so a stranger's connection fails at once with
// a clear error instead of a proof mismatch.
var helloMagic = [4]byte{'M', 'N', 't', 'p'}

// Handshake constants.
const (
	// helloVersion lets a later handshake be told apart.
	helloVersion = 1
	// proofLabel separates these proofs from relay and stream proofs that
	// use the same key pair.
	proofLabel = "tcp-punch"
	// challengeLen is 256 bits of randomness: fresh per connection, so a
	// recorded proof is worthless.
	challengeLen = 32
	helloLen     = len(helloMagic) + 1 + crypto.KeyLen + challengeLen
	proofLen     = sha256.Size // HMAC-SHA256
	msgUse       = 'U'
	msgAck       = 'A'
)

// errWrongPeer marks a connection that authenticated someone else, or failed to.
var errWrongPeer = errors.New("not the expected peer")

// proofInput is what a prover signs: the verifier's challenge and the
// prover's own key. The proof key is symmetric (both ends derive it from
// the same X25519 secret), so without the prover's key in the input a
// stranger could reflect one end's proof back to it on a second connection.
func proofInput(challenge []byte, prover crypto.PublicKey) []byte {
	return append(append(make([]byte, 0, len(challenge)+crypto.KeyLen), challenge...), prover[:]...)
}

// readHello reads the other end's hello and returns the key it claims and
// its challenge. The caller bounds it with a deadline on c.
func readHello(c net.Conn) (crypto.PublicKey, []byte, error) {
	b := make([]byte, helloLen)
	if _, err := io.ReadFull(c, b); err != nil {
		return crypto.PublicKey{}, nil, fmt.Errorf("read hello: %w", err)
	}
	if [4]byte(b[:4]) != helloMagic || b[4] != helloVersion {
		return crypto.PublicKey{}, nil, fmt.Errorf("hello starts %x, want %x version %d: not a meshnode TCP punch", b[:5], helloMagic, helloVersion)
	}
	return crypto.PublicKey(b[5 : 5+crypto.KeyLen]), b[5+crypto.KeyLen:], nil
}

// hello is the other end's hello, once read.
type hello struct {
	key       crypto.PublicKey
	challenge []byte
}

// authenticate proves this node's key to the other end of c and checks that
// it proves peer. theirs is their hello when the Listener already read it to
// route c, else nil. The caller bounds it with a deadline on c.
func authenticate(c net.Conn, priv crypto.PrivateKey, peer crypto.PublicKey, theirs *hello) error {
	self := priv.Public()
	challenge := make([]byte, challengeLen)
	if _, err := rand.Read(challenge); err != nil {
		return fmt.Errorf("make challenge: %w", err)
	}
	ours := make([]byte, 0, helloLen)
	ours = append(ours, helloMagic[:]...)
	ours = append(ours, helloVersion)
	ours = append(ours, self[:]...)
	ours = append(ours, challenge...)
	if _, err := c.Write(ours); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	if theirs == nil {
		key, ch, err := readHello(c)
		if err != nil {
			return err
		}
		theirs = &hello{key, ch}
	}
	if theirs.key != peer {
		return fmt.Errorf("%w: the other end claims key %s, want %s", errWrongPeer, theirs.key.Short(), peer.Short())
	}
	theirChallenge := theirs.challenge
	if bytes.Equal(theirChallenge, challenge) {
		return fmt.Errorf("%w: the other end echoed our challenge", errWrongPeer)
	}
	proof, err := crypto.Proof(priv, peer, proofLabel, proofInput(theirChallenge, self))
	if err != nil {
		return fmt.Errorf("prove key to %s: %w", peer.Short(), err)
	}
	if _, err := c.Write(proof); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	theirProof := make([]byte, proofLen)
	if _, err := io.ReadFull(c, theirProof); err != nil {
		return fmt.Errorf("read proof: %w", err)
	}
	if !crypto.VerifyProof(priv, peer, proofLabel, proofInput(challenge, peer), theirProof) {
		return fmt.Errorf("%w: the other end failed to prove key %s", errWrongPeer, peer.Short())
	}
	return nil
}

// choose sends the chooser's decision and waits for the agreement.
func choose(c net.Conn) error {
	if _, err := c.Write([]byte{msgUse}); err != nil {
		return fmt.Errorf("send use: %w", err)
	}
	return expect(c, msgAck)
}

// follow waits for the chooser's decision and agrees.
func follow(c net.Conn) error {
	if err := expect(c, msgUse); err != nil {
		return err
	}
	if _, err := c.Write([]byte{msgAck}); err != nil {
		return fmt.Errorf("send ack: %w", err)
	}
	return nil
}

func expect(c net.Conn, want byte) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("wait for %q: %w", want, err)
	}
	if b[0] != want {
		return fmt.Errorf("got %q, want %q", b[0], want)
	}
	return nil
}
