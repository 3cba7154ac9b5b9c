package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/atomicfile"
	"github.com/meshnode/meshnode/internal/wire"
)

// Files in the state directory.
const (
	keyFile = "private.key"
	// StateFile is the registration's file name in the state directory.
	StateFile = "state.json"
	stateMode = 0o600
	dirMode   = 0o700
)

// State is this node's registration, kept across restarts so later runs
// need no token.
type State struct {
	// CoordinatorURL and Pin are the coordinator the node registered
	// with or was last welcomed by, dialled first at start.
	CoordinatorURL string `json:"coordinator_url"`
	Pin            string `json:"pin"`
	// Coordinators are the mesh's coordinators, each with its own pin:
	// the token's, then each welcome's (empty in a state written before
	// several coordinators existed: CoordinatorURL alone).
	Coordinators   []crypto.Coordinator `json:"coordinators,omitempty"`
	CoordinatorKey crypto.PublicKey     `json:"coordinator_key"`
	Self           wire.Node            `json:"self"`
	NetworkV4      netip.Prefix         `json:"network_v4"`
	NetworkV6      netip.Prefix         `json:"network_v6"`
	// STUN is the coordinator's STUN servers from its last welcome, for
	// `meshnode netcheck` and for discovery before the stream is up.
	STUN []string `json:"stun,omitempty"`
	// STUN6 is its IPv6 STUN servers (stun_listen_v6), likewise.
	STUN6 []string `json:"stun6,omitempty"`
}

// errNotRegistered means the state directory holds no registration.
var errNotRegistered = errors.New("not registered")

func loadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, errNotRegistered
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", filepath.Join(dir, StateFile), err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s is damaged (%v): remove it and join again with a new token", filepath.Join(dir, StateFile), err)
	}
	return s, nil
}

// saveState writes atomically: a crash leaves the old or the new state,
// never half of one.
func saveState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, StateFile), b, stateMode)
}

// prefixes are the TUN's addresses with the overlay's prefix lengths.
func (s State) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range s.Self.Addresses {
		switch {
		case a.Is4() && s.NetworkV4.IsValid():
			out = append(out, netip.PrefixFrom(a, s.NetworkV4.Bits()))
		case a.Is6() && s.NetworkV6.IsValid():
			out = append(out, netip.PrefixFrom(a, s.NetworkV6.Bits()))
		}
	}
	return out
}

// routes are the overlay networks.
func (s State) routes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{s.NetworkV4, s.NetworkV6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}
