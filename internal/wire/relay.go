package wire

import (
	"fmt"

	"github.com/meshnode/meshnode/crypto"
)

// Relay frames, over UDP to the relay's address or as binary WebSocket
// messages on PathRelay:
//
//	RelayMagic (4) | type (1) | body
//
// A node first proves its key (hello → challenge → auth → ok); the relay
// then forwards data frames between authenticated nodes that are peers.
// Payloads are WireGuard packets: the relay never sees plaintext.

// RelayType is a relay frame type.
type RelayType byte

// Relay frame types.
const (
	// RelayData carries a WireGuard packet. Node → relay: Key is the
	// destination; relay → node: Key is the source.
	RelayData RelayType = 1
	// RelayHello (node → relay): Key is the node's key; asks for a challenge.
	RelayHello RelayType = 2
	// RelayChallenge (relay → node): Challenge to prove the key with.
	RelayChallenge RelayType = 3
	// RelayAuth (node → relay): Key, Challenge and Proof.
	RelayAuth RelayType = 4
	// RelayOK (relay → node): the sender's address is bound to its key.
	// It echoes the answered Challenge, so nobody who merely spoofs the
	// relay's address can keep a node believing it is bound.
	RelayOK RelayType = 5
)

// RelayProofLabel separates relay proofs from stream proofs.
const RelayProofLabel = "relay"

// RelayOKProofLabel labels the relay's own proof in its OK: only the holder
// of the relay's key can bind a node, so a forged challenge and OK from a
// spoofed source can't make a node believe it is bound.
const RelayOKProofLabel = "relay-ok"

// RelayHeaderLen is the length of a data frame's header.
const RelayHeaderLen = 4 + 1 + crypto.KeyLen

// relayChallengeLen is the challenge size: 256 bits of randomness.
const relayChallengeLen = 32

// proofLen is the size of an HMAC-SHA256 proof.
const proofLen = 32

// RelayFrame is a decoded relay frame. Payload aliases the input.
type RelayFrame struct {
	Type      RelayType
	Key       crypto.PublicKey
	Challenge []byte
	Proof     []byte
	Payload   []byte
}

// AppendRelayData appends a data frame for key carrying payload.
func AppendRelayData(dst []byte, key crypto.PublicKey, payload []byte) []byte {
	dst = append(dst, RelayMagic[:]...)
	dst = append(dst, byte(RelayData))
	dst = append(dst, key[:]...)
	return append(dst, payload...)
}

// SetRelayKey rewrites the key of data frame f in place: a relay forwards
// a frame to a key as the same frame from its sender.
func SetRelayKey(f []byte, key crypto.PublicKey) {
	copy(f[len(RelayMagic)+1:RelayHeaderLen], key[:])
}

// Marshal encodes a frame.
func (f RelayFrame) Marshal() []byte {
	b := append(RelayMagic[:], byte(f.Type))
	switch f.Type {
	case RelayData:
		return AppendRelayData(nil, f.Key, f.Payload)
	case RelayHello:
		b = append(b, f.Key[:]...)
	case RelayChallenge:
		b = append(b, f.Challenge...)
	case RelayOK:
		b = append(b, f.Challenge...)
		b = append(b, f.Proof...)
	case RelayAuth:
		b = append(b, f.Key[:]...)
		b = append(b, f.Challenge...)
		b = append(b, f.Proof...)
	}
	return b
}

// ParseRelay decodes a frame. It never copies: Payload and Challenge alias b.
func ParseRelay(b []byte) (RelayFrame, error) {
	var f RelayFrame
	if len(b) < 5 || [4]byte(b[:4]) != RelayMagic {
		return f, fmt.Errorf("relay frame: bad header (%d bytes)", len(b))
	}
	f.Type, b = RelayType(b[4]), b[5:]
	n, ok := relayBodyLen(f.Type)
	if !ok {
		return f, fmt.Errorf("relay frame: unknown type %d", f.Type)
	}
	if len(b) < n {
		return f, fmt.Errorf("relay frame: type %d needs %d bytes, got %d", f.Type, n, len(b))
	}
	switch f.Type {
	case RelayData:
		copy(f.Key[:], b)
		f.Payload = b[crypto.KeyLen:]
	case RelayHello:
		copy(f.Key[:], b)
	case RelayChallenge:
		f.Challenge = b[:relayChallengeLen]
	case RelayOK:
		f.Challenge = b[:relayChallengeLen]
		f.Proof = b[relayChallengeLen:n]
	case RelayAuth:
		copy(f.Key[:], b)
		f.Challenge = b[crypto.KeyLen : crypto.KeyLen+relayChallengeLen]
		f.Proof = b[crypto.KeyLen+relayChallengeLen : n]
	}
	return f, nil
}

// relayBodyLen is the least body length of each frame type.
func relayBodyLen(t RelayType) (int, bool) {
	switch t {
	case RelayData, RelayHello:
		return crypto.KeyLen, true
	case RelayChallenge:
		return relayChallengeLen, true
	case RelayOK:
		return relayChallengeLen + proofLen, true
	case RelayAuth:
		return crypto.KeyLen + relayChallengeLen + proofLen, true
	}
	return 0, false
}

// RelayChallengeLen is exported for relays that mint challenges.
const RelayChallengeLen = relayChallengeLen

// A relay echo is a data frame a node addresses to itself through the relay
// it uses: its payload is DiscoMagic and a random token, so the relay
// forwards it like any discovery packet. Only a relay that carries the
// frame can return the token; the node's Bind hands it to the relay client.
//
//	DiscoMagic (4) | token (RelayEchoTokenLen)
const (
	RelayEchoTokenLen = 16
	RelayEchoLen      = len(DiscoMagic) + RelayEchoTokenLen
)

// AppendRelayEcho appends an echo payload carrying token.
func AppendRelayEcho(dst []byte, token [RelayEchoTokenLen]byte) []byte {
	dst = append(dst, DiscoMagic[:]...)
	return append(dst, token[:]...)
}

// ParseRelayEcho returns the token of an echo payload.
func ParseRelayEcho(b []byte) ([RelayEchoTokenLen]byte, error) {
	if len(b) != RelayEchoLen || [4]byte(b[:4]) != DiscoMagic {
		return [RelayEchoTokenLen]byte{}, fmt.Errorf("relay echo: want %d bytes starting with the discovery magic, got %d", RelayEchoLen, len(b))
	}
	return [RelayEchoTokenLen]byte(b[len(DiscoMagic):]), nil
}
