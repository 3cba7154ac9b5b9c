package coordinator

import (
	"context"
	"errors"
	"sync"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// softwareBook is what each node last reported running, as stored: the
// web page shows it for offline nodes too. It is loaded at start and kept
// by this coordinator's own reports, so a node that reconnects running
// what it ran costs no write; another coordinator's reports reach it at
// the next start (the page shows their online nodes' from their path
// reports). Its lock is a leaf.
type softwareBook struct {
	mu sync.Mutex
	m  map[crypto.PublicKey]wire.Software
}

func newSoftwareBook(m map[crypto.PublicKey]wire.Software) *softwareBook {
	if m == nil {
		m = make(map[crypto.PublicKey]wire.Software)
	}
	return &softwareBook{m: m}
}

// differs reports whether sw is not what the book holds for key.
func (b *softwareBook) differs(key crypto.PublicKey, sw wire.Software) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[key] != sw
}

func (b *softwareBook) set(key crypto.PublicKey, sw wire.Software) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = sw
}

// get returns what key last reported; ok false: nothing.
func (b *softwareBook) get(key crypto.PublicKey) (sw wire.Software, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sw, ok = b.m[key]
	return sw, ok
}

// recordSoftware stores what a node reports running when it differs from
// what is stored; a failed write is logged and tried again at its next
// report.
func (s *Server) recordSoftware(ctx context.Context, key crypto.PublicKey, sw wire.Software) {
	if !s.software.differs(key, sw) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := s.store.SetSoftware(wctx, key, sw); err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			s.nodeLog.Warn("store software", "node", key.Short(), "err", err)
		}
		return
	}
	s.software.set(key, sw)
}
