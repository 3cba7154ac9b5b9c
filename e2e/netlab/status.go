package netlab

import (
	"net/netip"
)

// Path kinds in `meshnode status --json`.
const (
	PathDirect = "direct"
	PathRelay  = "relay"
	PathNone   = "none"
)

// Status is `meshnode status --json`, the CLI's stable interface for
// scripts; the lab reads it like any script would.
type Status struct {
	Self        SelfStatus        `json:"self"`
	Peers       []PeerStatus      `json:"peers"`
	Coordinator CoordinatorStatus `json:"coordinator"`
}

// SelfStatus is the node itself.
type SelfStatus struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
	PublicKey string       `json:"public_key"`
	Endpoints []string     `json:"endpoints"`
	NAT       struct {
		Mapping   string `json:"mapping"`
		PortAlloc string `json:"port_allocation"`
		Public    string `json:"public_address"`
	} `json:"nat"`
}

// CoordinatorStatus is the node's control connection.
type CoordinatorStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

// PeerStatus is one peer as the node sees it.
type PeerStatus struct {
	Name          string       `json:"name"`
	Addresses     []netip.Addr `json:"addresses"`
	PublicKey     string       `json:"public_key"`
	Online        bool         `json:"online"`
	Path          string       `json:"path"`
	Endpoint      string       `json:"endpoint"`
	LatencyMs     float64      `json:"latency_ms"`
	RxBytes       uint64       `json:"rx_bytes"`
	TxBytes       uint64       `json:"tx_bytes"`
	LastHandshake string       `json:"last_handshake"`
}

// Peer finds a peer by name.
func (s Status) Peer(name string) (PeerStatus, bool) {
	for _, p := range s.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// V4 is the node's overlay IPv4 address, invalid before it has one.
func (s SelfStatus) V4() netip.Addr {
	for _, a := range s.Addresses {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}
