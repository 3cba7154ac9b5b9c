package coordinator

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// visibility indexes who sees whom (peersUnder) for the hub's nodes
// under its policy, so that a node's welcome and the fan-out of its
// changes visit its peers rather than test every node of the mesh under
// the hub's lock. Nodes with the same part in the policy's rules (the
// same source and destination bits, and relay designation) see the same
// nodes: they form a class, and each class has one list of the nodes its
// members see, by name, shared by them all. A mesh without a policy is
// one class; a policy of 100 groups, about 100.
//
// The index is built on first use after a transition (the only change
// to the nodes, their names and tags, or the policy) and holds the
// nodes' entries as of then: a node whose record changes in place
// (candidates, presence) stays the same entry.
type visibility struct {
	class map[crypto.PublicKey]int
	// seen is, by class, the nodes its members see, members themselves
	// included (callers skip the node asking), by name.
	seen [][]*store.Node
}

func buildVisibility(res *policy.Resolved, nodes map[crypto.PublicKey]*store.Node) *visibility {
	v := &visibility{class: make(map[crypto.PublicKey]int, len(nodes))}
	bySig := map[string]int{}
	var parts []wire.RelayMember
	var members [][]*store.Node
	for _, n := range nodes {
		m := wire.RelayMember{Relay: isRelay(n)}
		if !res.Open() {
			m.Src, m.Dst, _ = res.Membership(n.Name)
		}
		sig := signature(m)
		c, ok := bySig[sig]
		if !ok {
			c = len(parts)
			bySig[sig] = c
			parts = append(parts, m)
			members = append(members, nil)
		}
		v.class[n.Key] = c
		members[c] = append(members[c], n)
	}
	v.seen = make([][]*store.Node, len(parts))
	for i := range parts {
		var seen []*store.Node
		for j := range parts {
			if res.Open() || parts[i].Sees(&parts[j]) {
				seen = append(seen, members[j]...)
			}
		}
		sortByName(seen)
		v.seen[i] = seen
	}
	return v
}

// signature is a class's key: its relay designation and rule bits.
func signature(m wire.RelayMember) string {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+8*(len(m.Src)+len(m.Dst)))
	if m.Relay {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	// Src's length keeps pairs of bit sets of different lengths apart.
	b = binary.AppendUvarint(b, uint64(len(m.Src)))
	for _, w := range m.Src {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	for _, w := range m.Dst {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return string(b)
}

func sortByName(ns []*store.Node) {
	slices.SortFunc(ns, func(a, b *store.Node) int { return strings.Compare(a.Name, b.Name) })
}

// seenBy is every node n sees, n included, by name. Caller holds mu.
func (h *hub) seenBy(n *store.Node) []*store.Node {
	if h.vis == nil {
		h.vis = buildVisibility(h.acc.res, h.nodes)
	}
	c, ok := h.vis.class[n.Key]
	if !ok {
		return nil
	}
	return h.vis.seen[c]
}
