package relayclient

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/discovery"
)

// Candidate is a UDP relay this node may bind to.
type Candidate struct {
	// Key is the key the relay verifies proofs with: the coordinator's,
	// or the relay node's.
	Key crypto.PublicKey
	// Addr is the relay's UDP address, host:port.
	Addr string
}

// choose picks the relay every node agrees on, so that both ends of a
// relayed pair bind to the same one: the relay node with the lowest key,
// else the coordinator's relay. The zero Candidate means none.
func choose(coordinator Candidate, nodes []Candidate) Candidate {
	var best Candidate
	found := false
	for _, n := range nodes {
		if n.Addr == "" || (found && bytes.Compare(n.Key[:], best.Key[:]) >= 0) {
			continue
		}
		best, found = n, true
	}
	if found {
		return best
	}
	if coordinator.Addr == "" {
		return Candidate{}
	}
	return coordinator
}

// resolveTimeout bounds one resolution of a relay's address (a DNS lookup
// when it is a name).
const resolveTimeout = 5 * time.Second

// resolve turns a relay's host:port into the address to bind to.
func resolve(ctx context.Context, c Candidate) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ap, err := discovery.ResolveSTUN(ctx, c.Addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay %s (%s): %w", c.Addr, c.Key.Short(), err)
	}
	return ap, nil
}
