package wire

import "time"

// STUNAttrResponseDelay asks meshnode's STUN server to answer a signed
// Binding request only after the given number of seconds (a 4-byte
// big-endian value), from the socket the request came in on. A node learns
// its NAT's mapping lifetime this way (how long a mapping lives without
// traffic): if the late answer still gets through, the mapping outlived
// the delay. Comprehension-optional (RFC 8489 §14: 0x8000-0xFFFF), so
// another server ignores it and answers at once, which the node takes as
// "not supported".
const STUNAttrResponseDelay = 0xC0DE

// Bounds on delayed answers: what one node, and all nodes, can make the
// coordinator hold.
const (
	// MaxResponseDelay bounds the delay asked for: longer than any NAT
	// mapping lifetime worth keeping a path alive for.
	MaxResponseDelay = 5 * time.Minute
	// MaxDelayedPerNode bounds one node's answers waiting at once: one per
	// alternate socket of the server, for a measurement and one it
	// replaced (a node that moved networks).
	MaxDelayedPerNode = 6
	// MaxDelayedTotal bounds all nodes' answers waiting at once.
	MaxDelayedTotal = 1 << 14
)
