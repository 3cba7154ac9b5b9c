// Package localapi is the node's control socket: `meshnode status`, `ping`
// and `down` talk to the running node through it, as HTTP over a Unix socket
// that only root (or a configured group) may open.
package localapi

import (
	"net/netip"

	"github.com/meshnode/meshnode/internal/wire"
)

// Paths served on the socket.
const (
	PathStatus = "/v1/status"
	PathPing   = "/v1/ping"
	PathDown   = "/v1/down"
)

// Status is `meshnode status --json`: a stable interface for scripts.
type Status struct {
	Self        Self        `json:"self"`
	Peers       []Peer      `json:"peers"`
	Coordinator Coordinator `json:"coordinator"`
	// Counters are what the node dropped and why: garbage on the UDP port,
	// WireGuard from unknown sources, sends with no path, rejected
	// (forged, replayed or malformed) discovery messages.
	Counters map[string]uint64 `json:"counters"`
}

// Self describes this node.
type Self struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
	PublicKey string       `json:"public_key"`
	Endpoints []string     `json:"endpoints"`
	Interface string       `json:"interface"`
	NAT       NAT          `json:"nat"`
}

// NAT is what this node learned of its NAT.
type NAT struct {
	Mapping   wire.NATMapping     `json:"mapping"`
	PortAlloc wire.PortAllocation `json:"port_allocation"`
	Public    string              `json:"public_address"`
	// Public6 is the address IPv6 STUN saw, and Mapping6 its NAT: usually
	// "none", a global address behind a firewall.
	Public6  string          `json:"public_address_v6,omitempty"`
	Mapping6 wire.NATMapping `json:"mapping_v6,omitempty"`
}

// Coordinator is the control connection's state.
type Coordinator struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

// Peer describes one peer.
type Peer struct {
	Name          string       `json:"name"`
	Addresses     []netip.Addr `json:"addresses"`
	PublicKey     string       `json:"public_key"`
	Online        bool         `json:"online"`
	Path          string       `json:"path"`       // "direct", "relay" or "none"
	Endpoint      string       `json:"endpoint"`   // ip:port in use; empty when none
	Candidates    int          `json:"candidates"` // addresses this node may punch; 0: relay only
	LatencyMs     float64      `json:"latency_ms"`
	RxBytes       uint64       `json:"rx_bytes"`
	TxBytes       uint64       `json:"tx_bytes"`
	LastHandshake string       `json:"last_handshake"` // RFC 3339; empty before the first
}

// PingRequest asks for one discovery ping.
type PingRequest struct {
	Peer string `json:"peer"` // a name, an overlay address or a public key
}

// PingReply is one answered ping.
type PingReply struct {
	Peer      string  `json:"peer"`
	Path      string  `json:"path"`
	Endpoint  string  `json:"endpoint"`
	LatencyMs float64 `json:"latency_ms"`
}

// ErrorReply is the body of a failed request.
type ErrorReply struct {
	Error string `json:"error"`
}
