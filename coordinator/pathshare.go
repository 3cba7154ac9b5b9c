package coordinator

import (
	"context"
	"sync"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// On a shared database each coordinator records the path reports of the
// nodes whose streams it holds, with what they run, and the path changes
// it saw, so that every coordinator's web page shows the whole mesh
// (store.WritePaths). The writes are batched: a node reports at most every
// wire.PathReportGap, and the page builds its view once a second.
const (
	// pathFlush spaces the batches.
	pathFlush = 2 * time.Second
	// pathBatch bounds the reports of one transaction.
	pathBatch = 256
)

// pathShare is what waits to be recorded: nodes whose report or software
// changed, nodes whose stream ended, and new path changes. Its lock is a
// leaf.
type pathShare struct {
	mu      sync.Mutex
	dirty   map[crypto.PublicKey]struct{}
	gone    map[crypto.PublicKey]struct{}
	changes []store.PathChange // at most store.MaxPathChanges
}

func newPathShare() *pathShare {
	return &pathShare{dirty: make(map[crypto.PublicKey]struct{}), gone: make(map[crypto.PublicKey]struct{})}
}

// touch marks key's report, or its software, changed.
func (p *pathShare) touch(key crypto.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dirty[key] = struct{}{}
	delete(p.gone, key)
}

// drop marks key's stream ended here.
func (p *pathShare) drop(key crypto.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone[key] = struct{}{}
	delete(p.dirty, key)
}

// changed queues a path change.
func (p *pathShare) changed(c store.PathChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changes = appendChange(p.changes, c)
}

// take returns, and forgets, what waits.
func (p *pathShare) take() (dirty, gone []crypto.PublicKey, changes []store.PathChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.dirty {
		dirty = append(dirty, k)
	}
	for k := range p.gone {
		gone = append(gone, k)
	}
	changes = p.changes
	clear(p.dirty)
	clear(p.gone)
	p.changes = nil
	return dirty, gone, changes
}

// softwareChanged marks key's software changed, for the shared record.
func (t *pathTable) softwareChanged(key crypto.PublicKey) {
	if t.share != nil {
		t.share.touch(key)
	}
}

// writePaths records what waits every s.pathFlush until ctx ends. A batch
// that fails is marked again, for the next flush; changes beyond the
// bound are dropped, oldest first.
func (s *Server) writePaths(ctx context.Context) {
	share := s.paths.share
	tick := time.NewTicker(s.pathFlush)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dirty, gone, changes := share.take()
		for len(dirty) > 0 || len(gone) > 0 || len(changes) > 0 {
			n := min(len(dirty), pathBatch)
			m := min(len(gone), pathBatch)
			if err := s.storePaths(ctx, dirty[:n], gone[:m], changes); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("record path reports for the other coordinators' web pages; retrying", "nodes", n+m, "err", err)
				}
				for _, k := range dirty {
					share.touch(k)
				}
				for _, k := range gone {
					share.drop(k)
				}
				for _, c := range changes {
					share.changed(c)
				}
				break
			}
			dirty, gone, changes = dirty[n:], gone[m:], nil
		}
	}
}

// storePaths writes the reports of dirty as this coordinator holds them
// (a node without one now counts as gone), drops those of gone, and adds
// changes.
func (s *Server) storePaths(ctx context.Context, dirty, gone []crypto.PublicKey, changes []store.PathChange) error {
	reports := make([]store.PathReport, 0, len(dirty))
	for _, key := range dirty {
		sess := s.hub.session(key)
		if sess == nil {
			gone = append(gone, key)
			continue
		}
		r := store.PathReport{Key: key, At: time.Now(), Software: sess.reportedSoftware(), Entries: []wire.PathEntry{}}
		if np, ok := s.paths.report(key); ok && np.sess == sess {
			r.At, r.Relay, r.Entries = np.at, np.relay, np.entries
		}
		reports = append(reports, r)
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return s.store.WritePaths(wctx, s.id, reports, gone, changes)
}
