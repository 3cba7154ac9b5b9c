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
	// Tags are this node's tags as the coordinator last sent them.
	Tags []string `json:"tags,omitempty"`
	// Relay is the address this node serves as the mesh's relay at:
	// relay_public while the administrator designates it (tag relay),
	// else empty.
	Relay string `json:"relay,omitempty"`
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
	// MappingLifetime is the longest silence an idle mapping was measured
	// to outlive ("" until measured, or when it outlived none of the
	// probes); IdleKeepalive is the heartbeat interval of idle paths that
	// follows from it (Go duration strings).
	MappingLifetime string `json:"mapping_lifetime"`
	IdleKeepalive   string `json:"idle_keepalive"`
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
	MTU           int          `json:"mtu"`      // the largest inner packet the path carries whole: searched on a direct path, the relay's fit (1376) through the UDP relay; 0: not known yet, or over TCP
	PathMTU       int          `json:"path_mtu"` // the underlay packet that carries it (mtu + 60 over IPv4, + 80 over IPv6, and the relay header's 37 through the relay)
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
