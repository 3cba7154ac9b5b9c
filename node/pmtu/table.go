package pmtu

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/meshnode/meshnode/crypto"
)

// Table maps each peer's overlay addresses to the MTU of its path, for the
// Guard. The Guard reads it on every packet without a lock: the address map
// is replaced whole when peers change, and each peer's MTU is an atomic.
// Changes (peers from the registry, MTUs from the path manager) take mu,
// a leaf lock.
type Table struct {
	full int // the TUN MTU: a peer whose path carries it needs nothing

	mu    sync.Mutex
	peers map[crypto.PublicKey]*entry
	addrs atomic.Pointer[map[netip.Addr]*entry]
	// reduced counts peers whose path is smaller than full: while none
	// is, the Guard passes every packet without a look.
	reduced atomic.Int32
}

// entry is one peer's MTU, shared by its addresses.
type entry struct {
	mtu   atomic.Int32 // 0: unknown, taken as full
	addrs []netip.Addr
}

// NewTable returns an empty table for a TUN of tunMTU bytes.
func NewTable(tunMTU int) *Table {
	t := &Table{full: tunMTU, peers: make(map[crypto.PublicKey]*entry)}
	t.addrs.Store(&map[netip.Addr]*entry{})
	return t
}

// TUNMTU is the TUN device's MTU the table was made for.
func (t *Table) TUNMTU() int { return t.full }

func (t *Table) isReduced(mtu int32) bool { return mtu > 0 && int(mtu) < t.full }

// SetPeer records a peer's overlay addresses.
func (t *Table) SetPeer(key crypto.PublicKey, addrs []netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.peers[key]
	if !ok {
		e = new(entry)
		t.peers[key] = e
	}
	e.addrs = append([]netip.Addr(nil), addrs...)
	t.publish()
}

// RemovePeer forgets a peer.
func (t *Table) RemovePeer(key crypto.PublicKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.peers[key]
	if !ok {
		return
	}
	if t.isReduced(e.mtu.Load()) {
		t.reduced.Add(-1)
	}
	delete(t.peers, key)
	t.publish()
}

// SetMTU sets the overlay MTU of a peer's path (0: unknown, as without a
// direct path). A key that is not a peer (removed meanwhile) is ignored.
func (t *Table) SetMTU(key crypto.PublicKey, mtu int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.peers[key]
	if !ok {
		return
	}
	old, next := e.mtu.Load(), int32(mtu)
	switch {
	case t.isReduced(next) && !t.isReduced(old):
		t.reduced.Add(1)
	case !t.isReduced(next) && t.isReduced(old):
		t.reduced.Add(-1)
	}
	e.mtu.Store(next)
}

// publish replaces the address map; mu is held.
func (t *Table) publish() {
	m := make(map[netip.Addr]*entry, 2*len(t.peers))
	for _, e := range t.peers {
		for _, a := range e.addrs {
			m[a] = e
		}
	}
	t.addrs.Store(&m)
}

// active reports whether any peer's path is smaller than the TUN.
func (t *Table) active() bool { return t.reduced.Load() > 0 }

// limit is the MTU towards the peer at overlay address a when it is
// smaller than the TUN's, else 0.
func (t *Table) limit(a netip.Addr) int {
	return t.mtuOf((*t.addrs.Load())[a])
}

func (t *Table) mtuOf(e *entry) int {
	if e == nil {
		return 0
	}
	if m := e.mtu.Load(); t.isReduced(m) {
		return int(m)
	}
	return 0
}

// lastLookup remembers one address's entry: a bulk flow sends batch after
// batch to one peer, and a hit saves hashing the address. It belongs to
// one goroutine.
type lastLookup struct {
	m    *map[netip.Addr]*entry // the map it was found in: a new map is a miss
	addr netip.Addr
	e    *entry
}

// limitCached is limit through a one-address cache.
func (t *Table) limitCached(a netip.Addr, c *lastLookup) int {
	m := t.addrs.Load()
	if c.m != m || c.addr != a {
		c.m, c.addr, c.e = m, a, (*m)[a]
	}
	return t.mtuOf(c.e)
}
