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
// The index is built on first use after a policy change, and kept up
// by each change to a node (move): a node's class depends only on its
// own name, tags and routes, so a change moves that node alone. It holds
// the nodes' entries as the hub does: a node whose record changes in
// place (candidates, presence) stays the same entry.
type visibility struct {
	open  bool // no policy: everyone sees everyone
	class map[crypto.PublicKey]int
	bySig map[string]int
	parts []wire.RelayMember
	// members are each class's nodes, in no order.
	members [][]*store.Node
	// seen is, by class, the nodes its members see, members themselves
	// included (callers skip the node asking), by name.
	seen [][]*store.Node
	// relays counts the designated relay nodes.
	relays int
}

func buildVisibility(res *policy.Resolved, nodes map[crypto.PublicKey]*store.Node) *visibility {
	v := &visibility{open: res.Open(), class: make(map[crypto.PublicKey]int, len(nodes)), bySig: map[string]int{}}
	for _, n := range nodes {
		c, _ := v.classOf(res, n)
		v.class[n.Key] = c
		v.members[c] = append(v.members[c], n)
		if isRelay(n) {
			v.relays++
		}
	}
	for i := range v.parts {
		v.seen[i] = v.seenByClass(i)
	}
	return v
}

// classOf is n's class under res, made (with no members, and an empty
// list) if new.
func (v *visibility) classOf(res *policy.Resolved, n *store.Node) (c int, made bool) {
	m := wire.RelayMember{Relay: isRelay(n)}
	if !v.open {
		m.Src, m.Dst, _ = res.Membership(n.Name)
	}
	sig := signature(m)
	if c, ok := v.bySig[sig]; ok {
		return c, false
	}
	c = len(v.parts)
	v.bySig[sig] = c
	v.parts = append(v.parts, m)
	v.members = append(v.members, nil)
	v.seen = append(v.seen, nil)
	return c, true
}

// sees reports whether class i's members see class j's.
func (v *visibility) sees(i, j int) bool { return v.open || v.parts[i].Sees(&v.parts[j]) }

// seenByClass is the list of class i from the members, by name.
func (v *visibility) seenByClass(i int) []*store.Node {
	var seen []*store.Node
	for j := range v.parts {
		if v.sees(i, j) {
			seen = append(seen, v.members[j]...)
		}
	}
	sortByName(seen)
	return seen
}

// move updates the index after a node changed from was to now (was nil:
// it joined; now nil: it left) under res, the policy resolved after the
// change: the lists of the classes that see either are edited in place,
// so the cost is what the node sees, and one test per class.
func (v *visibility) move(res *policy.Resolved, was, now *store.Node) {
	if was != nil {
		if c, ok := v.class[was.Key]; ok {
			delete(v.class, was.Key)
			v.members[c] = slices.DeleteFunc(v.members[c], func(o *store.Node) bool { return o == was })
			for i := range v.parts {
				if v.sees(i, c) {
					v.seen[i] = dropFrom(v.seen[i], was)
				}
			}
			if isRelay(was) {
				v.relays--
			}
		}
	}
	if now == nil {
		return
	}
	c, made := v.classOf(res, now)
	if made {
		// A new class: its list is the members of those it sees.
		v.seen[c] = v.seenByClass(c)
	}
	v.class[now.Key] = c
	v.members[c] = append(v.members[c], now)
	for i := range v.parts {
		if v.sees(i, c) {
			v.seen[i] = insertByName(v.seen[i], now)
		}
	}
	if isRelay(now) {
		v.relays++
	}
}

// dropFrom removes n from a list by name.
func dropFrom(list []*store.Node, n *store.Node) []*store.Node {
	i, _ := slices.BinarySearchFunc(list, n.Name, byName)
	for ; i < len(list) && list[i].Name == n.Name; i++ {
		if list[i] == n {
			return slices.Delete(list, i, i+1)
		}
	}
	return list
}

// insertByName adds n to a list by name.
func insertByName(list []*store.Node, n *store.Node) []*store.Node {
	i, _ := slices.BinarySearchFunc(list, n.Name, byName)
	return slices.Insert(list, i, n)
}

func byName(n *store.Node, name string) int { return strings.Compare(n.Name, name) }

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

// index is the visibility index, built if a policy change dropped it.
// Caller holds mu.
func (h *hub) index() *visibility {
	if h.vis == nil {
		h.vis = buildVisibility(h.acc.res, h.nodes)
	}
	return h.vis
}

// seenBy is every node n sees, n included, by name. Caller holds mu and
// must not keep the list past it.
func (h *hub) seenBy(n *store.Node) []*store.Node {
	v := h.index()
	c, ok := v.class[n.Key]
	if !ok {
		return nil
	}
	return v.seen[c]
}
