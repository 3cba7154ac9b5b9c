package wire

import (
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/meshnode/meshnode/crypto"
)

// A node signs its STUN Binding requests to its coordinator with RFC 8489
// short-term credentials (§9.1): USERNAME is the node's public key
// (crypto.PublicKey.String) and the password is STUNPassword of the key
// pair. The coordinator, holding the other half, checks MESSAGE-INTEGRITY
// and records the request's source as what it itself observed of the node:
// its peers may punch a public address only on that evidence. The node
// checks the response's MESSAGE-INTEGRITY in turn, so an off-path forger
// can't feed it a false mapping.
const STUNAuthLabel = "stun"

// STUNPassword is the short-term password shared by a node and its
// coordinator: either side computes it from its private key and the
// other's public key (X25519), and nobody else can.
func STUNPassword(priv crypto.PrivateKey, other crypto.PublicKey) (string, error) {
	p, err := crypto.Proof(priv, other, STUNAuthLabel, nil)
	if err != nil {
		return "", fmt.Errorf("stun password: %w", err)
	}
	return hex.EncodeToString(p), nil
}

// evidenceV6Bits is how much of an IPv6 address one seen source vouches
// for: a host's global addresses (privacy addresses, a router's several
// prefixes) share the /64 its request came from.
const evidenceV6Bits = 64

// Vouches reports whether having seen a node use address seen is evidence
// that it may be reached at ip: the same IPv4 address, or an IPv6 address
// in the same /64. The coordinator applies it to what it saw of a node;
// peers apply it to a call-me-maybe's addresses against the candidates the
// coordinator vouched for.
func Vouches(seen, ip netip.Addr) bool {
	seen, ip = seen.Unmap(), ip.Unmap()
	if seen.Is4() || ip.Is4() {
		return seen == ip
	}
	p, err := seen.Prefix(evidenceV6Bits)
	return err == nil && p.Contains(ip)
}
