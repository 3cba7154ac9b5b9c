package netlab

import (
	"net/netip"

	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/path"
)

// Path kinds in `meshnode status --json`.
const (
	PathDirect = path.PathDirect
	PathRelay  = path.PathRelay
	PathNone   = path.PathNone
)

// Status is `meshnode status --json`, the CLI's stable interface for
// scripts; the lab reads the binary's output into the node's own types.
type Status localapi.Status

// PeerStatus is one peer as the node sees it.
type PeerStatus = localapi.Peer

// SelfStatus is the node itself.
type SelfStatus struct{ localapi.Self }

// Peer finds a peer by name.
func (s Status) Peer(name string) (PeerStatus, bool) {
	for _, p := range s.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// Me is the node itself.
func (s Status) Me() SelfStatus { return SelfStatus{s.Self} }

// V4 is the node's overlay IPv4 address, invalid before it has one.
func (s SelfStatus) V4() netip.Addr {
	for _, a := range s.Addresses {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}
