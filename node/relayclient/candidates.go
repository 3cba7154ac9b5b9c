package relayclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/discovery"
)

// Candidate is a UDP relay this node may bind to.
type Candidate struct {
	// Key is the key the relay verifies proofs with: the coordinator's,
	// or the relay node's.
	Key crypto.PublicKey
	// Addr is the relay's UDP address, host:port. Addr6 is another way
	// to it over IPv6 ([IP]:port; the coordinator's stun_listen_v6), for
	// nodes that can't reach Addr: both lead to one relay, which forwards
	// between the families.
	Addr  string
	Addr6 string
	// URL and Pin are the HTTPS URL and certificate pin of the
	// coordinator serving the relay, for its TCP relay: set for the
	// relay of the mesh's coordinators where several serve it
	// (wire.MeshRelay), "" for this node's coordinator and relay nodes.
	URL string
	Pin string
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
	if coordinator.Addr == "" && coordinator.Addr6 == "" {
		return Candidate{}
	}
	return coordinator
}

// resolveTimeout bounds one resolution of a relay's address (a DNS lookup
// when it is a name).
const resolveTimeout = 5 * time.Second

// resolve turns a relay's addresses into those to bind to, IPv4 first:
// the ones that resolve, or an error naming why none did.
func resolve(ctx context.Context, c Candidate) ([]netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var out []netip.AddrPort
	var errs []error
	for _, a := range []struct {
		addr string
		v6   bool
	}{{c.Addr, false}, {c.Addr6, true}} {
		if a.addr == "" {
			continue
		}
		ap, err := discovery.ResolveSTUNFamily(ctx, a.addr, a.v6)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("relay %s (%s): %w", strings.Join(slices.DeleteFunc([]string{c.Addr, c.Addr6}, func(s string) bool { return s == "" }), " or "), c.Key.Short(), errors.Join(errs...))
	}
	return out, nil
}
