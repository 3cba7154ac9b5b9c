package wire

import "encoding/binary"

// One UDP socket carries four protocols. Their first bytes tell them apart
// without state (as Tailscale's magicsock does):
//   - WireGuard: a little-endian uint32 message type 1-4, so bytes 1-3 are
//     zero (WireGuard whitepaper §5.4).
//   - STUN: the two top bits of byte 0 are zero and bytes 4-7 hold the magic
//     cookie 0x2112A442 (RFC 8489 §5).
//   - meshnode discovery and relay: a 4-byte magic whose first byte is 'M'
//     (0x4D): its top bits are 01, so it is neither STUN nor, with a non-zero
//     byte 1, WireGuard.

// Kind is the protocol of a received UDP payload.
type Kind int

// Packet kinds.
const (
	KindUnknown Kind = iota
	KindWireGuard
	KindSTUN
	KindDisco
	KindRelay
)

func (k Kind) String() string {
	switch k {
	case KindWireGuard:
		return "wireguard"
	case KindSTUN:
		return "stun"
	case KindDisco:
		return "disco"
	case KindRelay:
		return "relay"
	}
	return "unknown"
}

// Magics of meshnode's own packets; the last byte is the format version.
var (
	DiscoMagic = [4]byte{'M', 'N', 'd', 1}
	RelayMagic = [4]byte{'M', 'N', 'r', 1}
)

// stunCookie is the STUN magic cookie (RFC 8489 §5).
const stunCookie = 0x2112A442

// wireGuardMinLen is the shortest WireGuard message, a keepalive: type (4),
// receiver (4), counter (8), empty payload's tag (16).
const wireGuardMinLen = 32

// stunHeaderLen is the STUN header length (RFC 8489 §5).
const stunHeaderLen = 20

// Classify tells which protocol a payload belongs to.
func Classify(b []byte) Kind {
	switch {
	case len(b) >= 4 && [4]byte(b[:4]) == DiscoMagic:
		return KindDisco
	case len(b) >= 4 && [4]byte(b[:4]) == RelayMagic:
		return KindRelay
	case len(b) >= wireGuardMinLen && b[0] >= 1 && b[0] <= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0:
		return KindWireGuard
	case len(b) >= stunHeaderLen && b[0]&0xC0 == 0 && binary.BigEndian.Uint32(b[4:8]) == stunCookie:
		return KindSTUN
	}
	return KindUnknown
}
