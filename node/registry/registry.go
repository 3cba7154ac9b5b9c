// Package registry is the node's one record of its peers. Every change from
// the coordinator's map goes through it, and it applies each change to every
// consumer that holds per-peer state (WireGuard's peer table, the path
// manager) in a fixed order, or to none: a consumer that fails rolls back the
// ones before it, so they never disagree about who the peers are.
package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Consumer holds per-peer state derived from the registry.
type Consumer interface {
	// Upsert adds a peer (old is nil) or updates it (old is its record
	// before the change). It is also how a removal is undone.
	Upsert(n wire.Node, old *wire.Node) error
	// Remove forgets a peer. It is also how an addition is undone.
	Remove(n wire.Node) error
}

// Named is a consumer with the name errors and logs give it.
type Named struct {
	Name string
	Consumer
}

// Registry is the peer record. Changes are serialised by mu, which is held
// while the consumers run (they take their own locks under it, never the
// other way round); reads take a snapshot without a lock, so the packet
// paths (the relay's authorizer) never wait for a change in progress.
type Registry struct {
	self      crypto.PublicKey
	consumers []Named
	changed   func()

	mu   sync.Mutex // serialises changes
	snap atomic.Pointer[map[crypto.PublicKey]wire.Node]
}

// New returns an empty registry for the node self. Changes are applied to
// consumers in the order given; changed, when set, runs after every change
// that took effect, with no lock held.
func New(self crypto.PublicKey, changed func(), consumers ...Named) *Registry {
	r := &Registry{self: self, consumers: consumers, changed: changed}
	empty := map[crypto.PublicKey]wire.Node{}
	r.snap.Store(&empty)
	return r
}

// ErrSelf is returned for a change that names this node as its own peer.
var ErrSelf = errors.New("the coordinator listed this node as its own peer")

// Upsert adds or updates a peer.
func (r *Registry) Upsert(n wire.Node) error {
	if n.PublicKey == r.self {
		return ErrSelf
	}
	r.mu.Lock()
	err := r.upsert(n)
	r.mu.Unlock()
	if err == nil {
		r.notify()
	}
	return err
}

// Remove forgets a peer; an unknown key is not an error.
func (r *Registry) Remove(k crypto.PublicKey) error {
	r.mu.Lock()
	err := r.remove(k)
	r.mu.Unlock()
	if err == nil {
		r.notify()
	}
	return err
}

// Reapply applies a peer's current record to every consumer again, after
// something a consumer derives from it changed (the exit node chosen, and
// with it WireGuard's allowed IPs); an unknown key is not an error.
func (r *Registry) Reapply(k crypto.PublicKey) error {
	r.mu.Lock()
	n, ok := (*r.snap.Load())[k]
	var err error
	if ok {
		err = r.upsert(n)
	}
	r.mu.Unlock()
	return err
}

// Replace makes the registry hold exactly peers (the coordinator's full
// map after a welcome): peers missing from it are removed, the rest
// upserted. Each peer's change is all-or-nothing; the errors of those that
// failed are joined, and the others take effect.
func (r *Registry) Replace(peers []wire.Node) error {
	keep := make(map[crypto.PublicKey]bool, len(peers))
	for _, n := range peers {
		keep[n.PublicKey] = true
	}
	var errs []error
	r.mu.Lock()
	for k := range *r.snap.Load() {
		if !keep[k] {
			errs = append(errs, r.remove(k))
		}
	}
	for _, n := range peers {
		if n.PublicKey == r.self {
			continue
		}
		errs = append(errs, r.upsert(n))
	}
	r.mu.Unlock()
	r.notify()
	return errors.Join(errs...)
}

// upsert applies one addition or update; r.mu is held.
func (r *Registry) upsert(n wire.Node) error {
	cur := *r.snap.Load()
	var old *wire.Node
	if o, ok := cur[n.PublicKey]; ok {
		old = &o
	}
	undo := func(c Named) error {
		if old == nil {
			return c.Remove(n)
		}
		return c.Upsert(*old, &n)
	}
	if err := r.apply(func(c Named) error { return c.Upsert(n, old) }, undo); err != nil {
		return fmt.Errorf("peer %s (%s): %w", n.Name, n.PublicKey.Short(), err)
	}
	r.store(func(m map[crypto.PublicKey]wire.Node) { m[n.PublicKey] = n })
	return nil
}

// remove applies one removal; r.mu is held.
func (r *Registry) remove(k crypto.PublicKey) error {
	old, ok := (*r.snap.Load())[k]
	if !ok {
		return nil
	}
	err := r.apply(func(c Named) error { return c.Remove(old) }, func(c Named) error { return c.Upsert(old, nil) })
	if err != nil {
		return fmt.Errorf("removing peer %s (%s): %w", old.Name, k.Short(), err)
	}
	r.store(func(m map[crypto.PublicKey]wire.Node) { delete(m, k) })
	return nil
}

// apply runs do on each consumer in order. When one fails, undo runs on
// those before it, last first, and the failure (with any undo failures) is
// returned.
func (r *Registry) apply(do, undo func(Named) error) error {
	for i, c := range r.consumers {
		err := do(c)
		if err == nil {
			continue
		}
		errs := []error{fmt.Errorf("%s: %w", c.Name, err)}
		for _, prev := range slices.Backward(r.consumers[:i]) {
			if uerr := undo(prev); uerr != nil {
				errs = append(errs, fmt.Errorf("undoing %s: %w", prev.Name, uerr))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// store publishes a modified copy of the snapshot; r.mu is held.
func (r *Registry) store(edit func(map[crypto.PublicKey]wire.Node)) {
	cur := *r.snap.Load()
	next := make(map[crypto.PublicKey]wire.Node, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	edit(next)
	r.snap.Store(&next)
}

func (r *Registry) notify() {
	if r.changed != nil {
		r.changed()
	}
}

// Get returns a peer's record.
func (r *Registry) Get(k crypto.PublicKey) (wire.Node, bool) {
	n, ok := (*r.snap.Load())[k]
	return n, ok
}

// Has reports whether k is a peer.
func (r *Registry) Has(k crypto.PublicKey) bool {
	_, ok := (*r.snap.Load())[k]
	return ok
}

// All returns every peer, sorted by name.
func (r *Registry) All() []wire.Node {
	cur := *r.snap.Load()
	out := make([]wire.Node, 0, len(cur))
	for _, n := range cur {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b wire.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Len is the number of peers.
func (r *Registry) Len() int { return len(*r.snap.Load()) }
