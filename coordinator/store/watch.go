package store

import (
	"context"
	"sync"

	"github.com/meshnode/meshnode/crypto"
)

// ChangeKind says what part of the state a committed write changed.
type ChangeKind string

// The kinds of Change.
const (
	// ChangeNode: a node registered, was removed, renamed or tagged, or
	// its routes changed; Key names it.
	ChangeNode ChangeKind = "node"
	// ChangeEndpoints: a node's candidates (SetEndpoints); Key names it.
	ChangeEndpoints ChangeKind = "endpoints"
	// ChangePresence: a node's last-seen time (SetLastSeen); Key names it.
	ChangePresence ChangeKind = "presence"
	ChangeToken    ChangeKind = "token"
	// ChangeBan: a ban lifted (Allow); Key names the key. A ban made by
	// RemoveNode comes as that node's ChangeNode.
	ChangeBan     ChangeKind = "ban"
	ChangePolicy  ChangeKind = "policy"
	ChangeSetting ChangeKind = "setting"
	// ChangeRelaySuspension: a relay node suspended (SuspendRelay); Key
	// names it.
	ChangeRelaySuspension ChangeKind = "relay_suspension"
	// ChangeResync: changes may have been missed (the database connection
	// that hears them was lost, or the watcher fell behind): read again
	// whatever the watcher keeps.
	ChangeResync ChangeKind = "resync"
	// ChangeCue is no change but a request (Cue): Coordinator is asked
	// to cue Key, which streams to it, to punch towards Peer now.
	ChangeCue ChangeKind = "cue"
)

// Change is one committed change to the database, as Watch delivers it.
type Change struct {
	Kind ChangeKind
	Key  crypto.PublicKey // the node's, for the kinds that name one
	// Own is true when this store made the change; false when another
	// store on the same database (another coordinator) did.
	Own bool
	// Peer and Coordinator are a ChangeCue's.
	Peer        crypto.PublicKey
	Coordinator string
}

// watchBuffer is how many changes a watcher may fall behind before the
// oldest give way to a ChangeResync.
const watchBuffer = 256

// watchers fans committed changes out to the channels Watch returned.
// publish never blocks: it runs on the path that commits (SQLite) or
// that hears the database (PostgreSQL).
type watchers struct {
	mu     sync.Mutex
	subs   map[chan Change]struct{}
	closed bool
}

// watch adds a subscriber until ctx ends or close.
func (w *watchers) watch(ctx context.Context) <-chan Change {
	ch := make(chan Change, watchBuffer)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		close(ch)
		return ch
	}
	if w.subs == nil {
		w.subs = make(map[chan Change]struct{})
	}
	w.subs[ch] = struct{}{}
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[ch]; ok {
			delete(w.subs, ch)
			close(ch)
		}
	})
	return ch
}

// publish delivers c to every subscriber. One whose buffer is full loses
// its oldest change and gets a ChangeResync in place of c: it reads the
// state again, which covers both. Only publish sends, under mu, so the
// slot it frees stays free.
func (w *watchers) publish(c Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- c:
			continue
		default:
		}
		select {
		case <-ch:
		default:
		}
		ch <- Change{Kind: ChangeResync}
	}
}

// close ends every subscription.
func (w *watchers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for ch := range w.subs {
		delete(w.subs, ch)
		close(ch)
	}
}
