package mapcache

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// Timing is when the Writer writes. A change that matters to coming up (a
// peer added or removed, a key, an address, a route, the policy, the DNS
// records, this node's own record) is written Settle after it, so that
// the burst of messages one change brings makes one write; candidates and
// presence, which change all the time, only Later after they changed.
// Writes are at least MinGap apart whatever changes: the file holds the
// whole map (megabytes in a mesh of thousands), so its write rate is
// bounded, not its content's.
type Timing struct {
	Settle, Later, MinGap time.Duration
}

// DefaultTiming: a membership or policy change is on disk within 10 s (a
// crash loses at most that; a clean stop writes what is pending), a
// candidate change within a minute; at most one write per 10 s.
func DefaultTiming() Timing {
	return Timing{Settle: time.Second, Later: time.Minute, MinGap: 10 * time.Second}
}

// Writer keeps the cache file in line with the node's map. The stream's
// handler tells it about each welcome and delta; Run writes. Its lock mu
// is a leaf, and no file I/O happens under it.
type Writer struct {
	path   string
	owner  Owner
	peers  func() []wire.Node
	timing Timing
	log    *slog.Logger
	wake   chan struct{}

	// Writes counts the files written, Failures the writes that failed.
	Writes, Failures atomic.Uint64

	// io serialises the file's writes and its removal; taken before mu.
	io sync.Mutex

	mu      sync.Mutex
	m       Map       // every field but Peers, which peers() gives at write time
	updated time.Time // when the map last changed
	due     time.Time // when the pending write is due; zero: none
	written time.Time // when the last write was done
	failing bool      // the last write failed (logged once until one works)
	removed bool      // Remove was called: nothing is written any more
}

// NewWriter returns a Writer of the file at path for owner; peers returns
// the peers as they are (the registry's snapshot).
func NewWriter(path string, owner Owner, peers func() []wire.Node, timing Timing, log *slog.Logger) *Writer {
	return &Writer{path: path, owner: owner, peers: peers, timing: timing, log: log, wake: make(chan struct{}, 1)}
}

// Welcome takes a welcome: the whole map changed.
func (w *Writer) Welcome(msg wire.StreamMsg) {
	w.mu.Lock()
	w.m = Map{Relay: msg.Relay, Relay6: msg.Relay6, STUN: slices.Clone(msg.STUN), STUN6: slices.Clone(msg.STUN6), Filter: msg.Filter, DNS: msg.DNS, MeshRelay: msg.MeshRelay}
	if msg.Self != nil {
		w.m.Self = *msg.Self
	}
	w.m.Held = wire.MapVersion{Epoch: msg.Epoch, Version: msg.Version}
	w.changedLocked(true)
	w.mu.Unlock()
}

// Delta takes a delta: this node's new record and new policy when it
// carries them, and whether anything in it matters to coming up
// (Significant), or only candidates and presence changed.
func (w *Writer) Delta(msg wire.StreamMsg, significant bool) {
	w.mu.Lock()
	if msg.Self != nil {
		w.m.Self = *msg.Self
		significant = true
	}
	if msg.Filter != nil {
		w.m.Filter = msg.Filter
		significant = true
	}
	if msg.MeshRelay != nil {
		w.m.MeshRelay = msg.MeshRelay
		significant = true
	}
	if len(msg.Remove) > 0 {
		significant = true
	}
	if w.m.Held.Epoch != 0 {
		w.m.Held.Version = max(w.m.Held.Version, msg.Version)
	}
	w.changedLocked(significant)
	w.mu.Unlock()
}

// Significant reports whether a peer's new record n changes what a node
// needs to come up and reach it, beyond a change of its candidates and
// presence: old is its record before, nil for a new peer. A peer's first
// candidates are significant (a peer reports them just after it joins,
// and without them a cached peer can't be reached); later changes of them
// are not.
func Significant(old *wire.Node, n wire.Node) bool {
	return old == nil || len(old.Endpoints) == 0 && len(n.Endpoints) > 0 ||
		old.Name != n.Name || !slices.Equal(old.Addresses, n.Addresses) ||
		!slices.Equal(old.Routes, n.Routes) || !slices.Equal(old.PrimaryRoutes, n.PrimaryRoutes) ||
		!slices.Equal(old.Tags, n.Tags) || old.Relay != n.Relay
}

// Remove deletes the file and writes no more: the node was removed from
// the mesh, and its map must not bring it up again.
func (w *Writer) Remove() error {
	w.io.Lock()
	defer w.io.Unlock()
	w.mu.Lock()
	w.removed, w.due = true, time.Time{}
	w.mu.Unlock()
	if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// changedLocked schedules a write for a change; w.mu is held.
func (w *Writer) changedLocked(significant bool) {
	if w.removed {
		return
	}
	now := time.Now()
	w.updated = now
	delay := w.timing.Later
	if significant {
		delay = w.timing.Settle
	}
	due := now.Add(delay)
	if earliest := w.written.Add(w.timing.MinGap); due.Before(earliest) {
		due = earliest
	}
	if w.due.IsZero() || due.Before(w.due) {
		w.due = due
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run writes each change when it is due, until ctx ends; then it writes
// what is still pending, so a clean stop leaves the latest map.
func (w *Writer) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		w.mu.Lock()
		due := w.due
		w.mu.Unlock()
		if !due.IsZero() {
			t.Reset(time.Until(due))
		}
		select {
		case <-ctx.Done():
			t.Stop()
			w.write()
			return
		case <-w.wake:
			t.Stop()
		case <-t.C:
			w.write()
		}
	}
}

// write writes the map if a write is pending.
func (w *Writer) write() {
	w.io.Lock()
	defer w.io.Unlock()
	w.mu.Lock()
	if w.due.IsZero() {
		w.mu.Unlock()
		return
	}
	// The peers are read after the rest, Held among it: the file's map is
	// then never older than the version it names.
	m, updated := w.m, w.updated
	w.due = time.Time{}
	w.written = time.Now()
	w.mu.Unlock()

	m.Peers = w.peers()
	err := Save(w.path, w.owner, m, updated)

	if err != nil {
		w.Failures.Add(1)
	} else {
		w.Writes.Add(1)
	}
	w.mu.Lock()
	wasFailing := w.failing
	w.failing = err != nil
	if err != nil && w.due.IsZero() {
		// Tried again after MinGap, or at the next change.
		w.due = w.written.Add(w.timing.MinGap)
	}
	w.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		w.log.Warn("peer map not cached; a restart while no coordinator answers would come up without peers", "err", err)
	case err != nil:
		w.log.Debug("peer map still not cached", "err", err)
	case wasFailing:
		w.log.Info("peer map cached again", "file", w.path)
	}
}
