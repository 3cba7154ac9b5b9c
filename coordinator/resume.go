package coordinator

import (
	"cmp"
	"encoding/json"
	"math/rand/v2"
	"slices"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// A node that reconnects names the map it holds (wire.MapVersion): this
// coordinator's epoch and the version it had applied. When the hub can
// tell what changed for that node since, the welcome carries only that
// (wire.StreamMsg.Resumed): the peers whose records changed and those
// that came into or went out of its sight. Otherwise, and always for a
// map of another coordinator (versions are each hub's own count, in
// memory: coordinators on one database don't share them) or of an
// earlier run of this one, the full map.

// visLogSize bounds the log of changes to who sees whom: joins,
// removals, tags, names and routes. A node that missed more of them
// than the log holds gets the full map.
const visLogSize = 4096

// visChange is one node's change that may have changed who sees it;
// joined when it joined then.
type visChange struct {
	version uint64
	key     crypto.PublicKey
	joined  bool
}

// changes is what the hub keeps to resume maps. Each node's record
// changes in place (candidates, presence) far more often than who sees
// whom, so the first is kept as one version a node, exact and never
// dropped, and only the second as a bounded log.
type changes struct {
	epoch uint64
	// last is each node's latest change: its record, or its visibility.
	last map[crypto.PublicKey]uint64
	// vis lists the visibility changes after floor, oldest first.
	vis   []visChange
	floor uint64
}

func newChanges() changes {
	// Not a secret: it only tells this run's versions from another's.
	return changes{epoch: rand.Uint64() | 1, last: map[crypto.PublicKey]uint64{}}
}

// record notes that key's record changed at version.
func (c *changes) record(version uint64, key crypto.PublicKey) { c.last[key] = version }

// visibility notes that key changed (joined) at version in a way that
// may change who sees it, dropping the oldest such change beyond
// visLogSize.
func (c *changes) visibility(version uint64, key crypto.PublicKey, joined bool) {
	c.last[key] = version
	if len(c.vis) == visLogSize {
		c.floor = c.vis[0].version
		c.vis = c.vis[1:]
	}
	c.vis = append(c.vis, visChange{version, key, joined})
}

// reset notes a change at version to who may see whom throughout (the
// policy): no map from before can be resumed.
func (c *changes) reset(version uint64) {
	c.vis = nil
	c.floor = version
}

// resume is what n, which holds the map named by holds, lacks of its
// map as it is now: the records of peers that changed or came into its
// sight, and the keys of nodes that may have left it. ok is false when
// the hub can't tell (another epoch, a version it never gave or whose
// changes it no longer holds, n's own sight changed): the full map
// then. The cost is n's peers and the visibility changes since holds,
// at most visLogSize. Caller holds mu.
func (h *hub) resume(n *store.Node, holds *wire.MapVersion) (ups []json.RawMessage, rems []crypto.PublicKey, ok bool) {
	c := &h.changes
	if holds == nil || holds.Epoch != c.epoch || holds.Version < c.floor || holds.Version > h.version {
		return nil, nil, false
	}
	since := holds.Version
	i, _ := slices.BinarySearchFunc(c.vis, since+1, func(e visChange, v uint64) int { return cmp.Compare(e.version, v) })
	// moved holds the nodes whose sight changed since, and whether n
	// may have held them then: not if they joined since.
	moved := map[crypto.PublicKey]bool{}
	for _, e := range c.vis[i:] {
		if e.key == n.Key {
			return nil, nil, false
		}
		if _, ok := moved[e.key]; !ok {
			moved[e.key] = !e.joined
		}
	}
	for _, o := range h.seenBy(n) {
		if o.Key == n.Key {
			continue
		}
		if c.last[o.Key] > since {
			ups = append(ups, h.encoded(o))
		}
		delete(moved, o.Key)
	}
	for k, held := range moved {
		if held {
			rems = append(rems, k)
		}
	}
	return ups, rems, true
}
