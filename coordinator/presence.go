package coordinator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
)

// Presence across coordinators: each coordinator records in the database
// which nodes' streams it holds (store.Presence), under a lease it renews
// while it runs. The others hear each change (follow.go) and show those
// nodes online, with the stream's TCP candidate and relay. A coordinator
// that stops says goodbye (EndLease); one that dies stops renewing, and
// whichever coordinator next expires leases takes its nodes offline.

// leaseTiming is how a coordinator keeps its lease.
type leaseTiming struct {
	// renew is how often the lease is renewed, and expired leases
	// looked for: a dead coordinator's nodes go offline at most renew
	// after its lease ends.
	renew time.Duration
	// length is how long a lease lasts past a renewal: length/renew
	// renewals may fail in a row (a database failover of a few seconds,
	// a stalled host) before this coordinator's nodes are taken offline
	// elsewhere. Clocks of the coordinators must agree to well within it
	// (NTP does).
	length time.Duration
}

// defaultLease: a dead coordinator's nodes are offline everywhere within
// 10 to 12 s (nodes that fail over to another coordinator come back
// online as soon as it welcomes them); five renewals may fail first. A
// renewal is one small write every 2 s per coordinator.
func defaultLease() leaseTiming { return leaseTiming{renew: 2 * time.Second, length: 10 * time.Second} }

// presenceWriter stores the presence of the nodes connected here, one
// write per node for the latest state: a node that comes and goes faster
// than the database answers costs one write per round, and writes for one
// node never overtake each other. What fails is retried at the next
// renewal.
type presenceWriter struct {
	mu    sync.Mutex
	dirty map[crypto.PublicKey]struct{}
	wake  chan struct{} // capacity 1
}

func newPresenceWriter() *presenceWriter {
	return &presenceWriter{dirty: make(map[crypto.PublicKey]struct{}), wake: make(chan struct{}, 1)}
}

// mark asks for keys' presence to be stored again, now.
func (w *presenceWriter) mark(keys ...crypto.PublicKey) {
	w.add(keys)
	w.poke()
}

// add asks for keys' presence to be stored again at the next poke.
func (w *presenceWriter) add(keys []crypto.PublicKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.dirty[k] = struct{}{}
	}
}

func (w *presenceWriter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *presenceWriter) take() map[crypto.PublicKey]struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirty
	w.dirty = make(map[crypto.PublicKey]struct{})
	return d
}

// markPresence has key's presence stored as the hub now has it, when
// other coordinators may share the database.
func (s *Server) markPresence(key crypto.PublicKey) {
	if s.shared {
		s.presence.mark(key)
	}
}

// presenceBatch is how many nodes' presence one transaction writes: a
// coordinator that thousands of nodes connect to at once writes it in a
// few transactions rather than thousands.
const presenceBatch = 256

// writePresence stores marked presence until ctx ends.
func (s *Server) writePresence(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.presence.wake:
		}
		var batch []crypto.PublicKey
		for key := range s.presence.take() {
			if batch = append(batch, key); len(batch) == presenceBatch {
				s.storePresence(ctx, batch)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			s.storePresence(ctx, batch)
		}
	}
}

// storePresence writes keys' presence as the hub has it; on failure they
// are marked again, for the next renewal.
func (s *Server) storePresence(ctx context.Context, keys []crypto.PublicKey) {
	var here []store.Presence
	var gone []crypto.PublicKey
	now := time.Now()
	for _, key := range keys {
		if st, ok := s.hub.localStream(key); ok {
			here = append(here, store.Presence{Key: key, TCP: st.tcp, Relay: st.relay, Since: now})
		} else {
			gone = append(gone, key)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := s.store.WritePresence(wctx, s.id, here, gone); err != nil && ctx.Err() == nil {
		s.log.Warn("store the presence of nodes; retrying at the next lease renewal", "nodes", len(keys), "err", err)
		s.presence.add(keys)
	}
}

// takeLease takes this coordinator's lease before it serves.
func (s *Server) takeLease(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	now := time.Now()
	if _, err := s.store.RenewLease(ctx, s.leaseInfo(), now.Add(s.lease.length)); err != nil {
		return err
	}
	s.refreshMesh(ctx, now)
	s.refreshMeshRelay(ctx, true)
	return nil
}

// keepLease renews the lease and expires others' until ctx ends.
func (s *Server) keepLease(ctx context.Context) {
	t := time.NewTicker(s.lease.renew)
	defer t.Stop()
	s.reach.ok.Store(time.Now().UnixNano()) // takeLease has just taken it
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			s.renewLease(ctx)
		}
	}
}

// leaseReach is what keepLease knows of its reach to the database: when
// a renewal last succeeded (ok), and when renewals succeeded again after
// a gap of half a lease or more (back), and the last success before that
// gap (from); Unix nanoseconds, zero until then. A database down for
// about a lease lets every coordinator's lease end, not only a dead
// one's; the others, alive, renew within their interval (and their
// store's retry pause) once it is back. So for a lease's length after
// such a gap a coordinator expires no one, and reads the others' leases
// as they were before it (liveSince): their nodes don't go offline for a
// few seconds after every long outage, however long the database took to
// come back; a coordinator that really died meanwhile is expired that
// much later. Only keepLease's goroutine writes it.
type leaseReach struct {
	ok, from, back atomic.Int64
}

// unixTime is a leaseReach time; zero stays the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// beforeGap is when the database was last reached before a gap of half
// a lease or more that still lasts at now, or that ended less than a
// lease before it; zero when there is none.
func (r *leaseReach) beforeGap(now time.Time, length time.Duration) time.Time {
	if ok := unixTime(r.ok.Load()); !ok.IsZero() && now.Sub(ok) >= length/2 {
		return ok
	}
	if back := unixTime(r.back.Load()); !back.IsZero() && now.Sub(back) < length {
		return unixTime(r.from.Load())
	}
	return time.Time{}
}

// renewLease renews the lease; a lease that had lapsed (its presence
// expired by another coordinator) is taken anew and every stream here
// recorded again. Then it takes the nodes of expired leases offline,
// unless the database was only just regained (leaseReach), and updates
// the mesh's relay.
func (s *Server) renewLease(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	now := time.Now()
	renewed, err := s.store.RenewLease(rctx, s.leaseInfo(), now.Add(s.lease.length))
	switch {
	case err != nil:
		s.followFailed(ctx, "renew this coordinator's lease", err)
	case !renewed:
		s.log.Warn("this coordinator's lease had lapsed (the database was unreachable for longer than the lease); recording its nodes' presence again", "lease", s.lease.length)
		s.presence.mark(s.hub.localKeys()...)
	}
	if err == nil {
		// The renewal may have waited out much of the gap in the store's
		// retries: measured when it succeeded.
		at := time.Now()
		if ok := unixTime(s.reach.ok.Load()); at.Sub(ok) >= s.lease.length/2 {
			// from first: a reader that sees the new back with the old
			// from reads leases more leniently, not less.
			s.reach.from.Store(ok.UnixNano())
			s.reach.back.Store(at.UnixNano())
		}
		s.reach.ok.Store(at.UnixNano())
	}
	s.presence.poke()
	if err != nil {
		return
	}
	s.refreshMesh(rctx, now)
	if back := unixTime(s.reach.back.Load()); back.IsZero() || time.Since(back) >= s.lease.length {
		s.expireLeases(ctx, rctx, now)
	}
	// After the expiry: a dead coordinator's relay is no longer listed.
	s.refreshMeshRelay(rctx, !renewed)
}

// expireLeases takes the nodes of ended leases offline, and those of
// coordinators that died; rctx bounds the renewal, ctx the lease.
func (s *Server) expireLeases(ctx, rctx context.Context, now time.Time) {
	gone, err := s.store.ExpireLeases(rctx, now)
	if err != nil {
		s.followFailed(ctx, "expire the leases of stopped coordinators", err)
		return
	}
	s.offline(gone, now, "a coordinator's lease ended: its nodes are offline")
	// A coordinator whose process died frees its lease lock at once
	// (store.ExpireUnlocked): its nodes go offline within a renewal or
	// two rather than a lease. Only leases renewed at least a renewal
	// ago, which a live coordinator would have renewed since, and only
	// leases renewed half a renewal or more (for the clocks) after this
	// store's own lock was taken: after a database restart every lock is
	// free until its coordinator renews, and renewing takes it first.
	dead, err := s.store.ExpireUnlocked(rctx, now.Add(s.lease.length-s.lease.renew), s.lease.renew/2+s.lease.length)
	if err != nil {
		s.followFailed(ctx, "expire the leases of coordinators whose lease lock is free", err)
		return
	}
	s.offline(dead, now, "a coordinator's lease lock is free (its process ended): its nodes are offline")
}

// offline takes gone, the nodes of expired leases, offline here.
func (s *Server) offline(gone []crypto.PublicKey, now time.Time, msg string) {
	for _, key := range gone {
		s.hub.setRemote(key, store.Presence{}, false, now)
	}
	if len(gone) > 0 {
		s.log.Info(msg, "nodes", len(gone))
	}
}

// endLease says goodbye: the nodes connected here are offline at once
// for the other coordinators. Every stream has ended.
func (s *Server) endLease() {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if _, err := s.store.EndLease(ctx, s.id); err != nil {
		s.log.Warn("end this coordinator's lease; its nodes go offline elsewhere when it expires", "lease", s.lease.length, "err", err)
	}
}

// liveSince is the time a lease must reach for its nodes to be read as
// online at now: a lease's length earlier, or a lease's length before
// the database was last reached when it was unreachable for half a lease
// or more (leaseReach): during the gap, and for a lease after it. A
// lease that ran out in a database outage is renewed within that once
// the database is back; until then its nodes stay online here, even when
// this coordinator reads them (its listener's resync) before any
// coordinator has renewed. A dead coordinator's nodes go offline when a
// coordinator expires its lease (renewLease), which deletes their
// presence and announces it.
func (s *Server) liveSince(now time.Time) time.Time {
	since := now.Add(-s.lease.length)
	if seen := s.reach.beforeGap(now, s.lease.length); !seen.IsZero() && seen.Add(-s.lease.length).Before(since) {
		return seen.Add(-s.lease.length)
	}
	return since
}

// followPresence applies where another coordinator says key is
// connected, or that it no longer is.
func (s *Server) followPresence(ctx context.Context, key crypto.PublicKey) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	now := time.Now()
	p, ok, err := s.store.Presence(rctx, key, s.liveSince(now))
	if err != nil {
		return s.followFailed(ctx, "read a node's presence another coordinator changed", err)
	}
	endStale(s.hub.setRemote(key, p, ok && p.Coordinator != s.id, now))
	return nil
}

// followOnline applies every node's presence, as a resync.
func (s *Server) followOnline(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	now := time.Now()
	list, err := s.store.Online(rctx, s.liveSince(now))
	if err != nil {
		return s.followFailed(ctx, "read where every node is connected", err)
	}
	endStale(s.hub.syncRemote(list, s.id, now)...)
	return nil
}

// localStream is key's stream here; here is false without one.
func (h *hub) localStream(key crypto.PublicKey) (st streamInfo, here bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sess := h.sessions[key]; sess != nil {
		return streamInfo{online: true, tcp: sess.tcp, relay: sess.relay}, true
	}
	return streamInfo{}, false
}

// localSessions lists the streams here.
func (h *hub) localSessions() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*session, 0, len(h.sessions))
	for _, sess := range h.sessions {
		out = append(out, sess)
	}
	return out
}

// localKeys lists the nodes with a stream here.
func (h *hub) localKeys() []crypto.PublicKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]crypto.PublicKey, 0, len(h.sessions))
	for k := range h.sessions {
		out = append(out, k)
	}
	return out
}

// setRemote records that key is connected to another coordinator as p
// (ok) or to none (!ok), and pushes the node as attach and detach do
// when what its peers see changed. It returns the node's stream here
// when p is newer: the node left it for the other coordinator, and the
// caller ends it.
func (h *hub) setRemote(key crypto.PublicKey, p store.Presence, ok bool, now time.Time) (stale *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.setRemoteLocked(key, p, ok, now)
}

// syncRemote applies list, every node connected to a coordinator; self's
// own are in sessions. It returns the streams here that nodes left for
// another coordinator, for the caller to end.
func (h *hub) syncRemote(list []store.Presence, self string, now time.Time) (stale []*session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := make(map[crypto.PublicKey]store.Presence, len(list))
	for _, p := range list {
		if p.Coordinator != self {
			at[p.Key] = p
		}
	}
	for key := range h.nodes {
		p, ok := at[key]
		if sess := h.setRemoteLocked(key, p, ok, now); sess != nil {
			stale = append(stale, sess)
		}
	}
	return stale
}

// setRemoteLocked is setRemote. Caller holds mu.
func (h *hub) setRemoteLocked(key crypto.PublicKey, p store.Presence, ok bool, now time.Time) (stale *session) {
	n := h.nodes[key]
	if n == nil {
		return nil
	}
	before := h.stream(key)
	if ok {
		h.remote[key] = p
		if sess := h.sessions[key]; sess != nil && p.Since.After(sess.attached) {
			// The node streams to the other coordinator since after it
			// attached here: this stream is dead and not yet noticed
			// (detach then finds it replaced).
			delete(h.sessions, key)
			stale = sess
		}
	} else {
		delete(h.remote, key)
	}
	after := h.stream(key)
	if before == after {
		return stale
	}
	switch {
	case !after.online:
		n.LastSeen = now
	case h.sessions[key] == nil:
		n.LastSeen = p.Since
	}
	h.presenceChanged(n)
	return stale
}

// endStale ends streams whose nodes moved to another coordinator.
func endStale(stale ...*session) {
	for _, sess := range stale {
		if sess != nil {
			sess.stop(closeReplaced, "replaced by a newer stream from the same node at another coordinator", nil)
		}
	}
}
