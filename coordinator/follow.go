package coordinator

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/policy"
)

// Several coordinators may share one PostgreSQL database. Each applies
// its own writes to its hub as it makes them; follow applies the others'
// (store.Watch, LISTEN/NOTIFY) through the same hub methods, after
// reading what they committed: a notice names only what changed, the
// database says how.

// Bounds on what other coordinators' notices can make this one do.
const (
	// maxFollowBatch is how many notices are gathered before they are
	// applied; more waiting turn into one resync (a read of every node).
	// Notices naming the same node are applied once per batch.
	maxFollowBatch = 1024
	// maxPresenceReads is how many nodes' presence a batch reads one by
	// one; beyond, it reads every node's in one query (a coordinator
	// that many nodes connect to at once writes theirs in batches).
	maxPresenceReads = 64
	// followReadTimeout bounds one read of the database for a notice.
	followReadTimeout = 10 * time.Second
	// followRetry is the pause before the mesh is read again after a
	// read failed (the database unreachable): what that read missed is
	// covered by the resync.
	followRetry = time.Second
)

// followBatch is what a batch of notices asks for.
type followBatch struct {
	nodes     map[crypto.PublicKey]struct{} // records to read again
	endpoints map[crypto.PublicKey]struct{} // candidates to read again
	presence  map[crypto.PublicKey]struct{} // where nodes are connected
	// cues asked of this coordinator (self): to, about.
	cues   map[[2]crypto.PublicKey]struct{}
	self   string
	policy bool
	resync bool
	// suspensions: another coordinator suspended a relay.
	suspensions bool
}

// add notes what c asks for. This coordinator's own changes are in its
// hub already.
func (b *followBatch) add(c store.Change) {
	if c.Kind == store.ChangeCue {
		if c.Coordinator == b.self {
			b.cues[[2]crypto.PublicKey{c.Key, c.Peer}] = struct{}{}
		}
	} else if c.Own && c.Kind != store.ChangeResync {
		return
	}
	switch c.Kind {
	case store.ChangeNode:
		b.nodes[c.Key] = struct{}{}
	case store.ChangeEndpoints:
		b.endpoints[c.Key] = struct{}{}
	case store.ChangePresence:
		b.presence[c.Key] = struct{}{}
	case store.ChangePolicy:
		b.policy = true
	case store.ChangeResync:
		b.resync = true
	case store.ChangeRelaySuspension:
		b.suspensions = true
	}
	if len(b.cues) > maxFollowBatch {
		// Cues are not state: the nodes ask again.
		clear(b.cues)
	}
	if len(b.nodes)+len(b.endpoints)+len(b.presence) > maxFollowBatch {
		b.resync = true
		clear(b.nodes)
		clear(b.endpoints)
		clear(b.presence)
	}
}

// follow applies other coordinators' changes until ch closes. It takes
// one notice, gathers those already waiting, and applies the batch; when
// a read fails it pauses, then reads the whole mesh again. Tokens, bans
// and settings are not in the hub: it reads them from the store when
// asked.
func (s *Server) follow(ctx context.Context, ch <-chan store.Change) {
	for c := range ch {
		b := s.newFollowBatch()
		b.add(c)
		for more := true; more; {
			select {
			case c, ok := <-ch:
				if more = ok; ok {
					b.add(c)
				}
			default:
				more = false
			}
		}
		for s.applyBatch(ctx, b) != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(followRetry):
			}
			b = s.newFollowBatch()
			b.resync = true
		}
	}
}

func (s *Server) newFollowBatch() *followBatch {
	return &followBatch{
		nodes: map[crypto.PublicKey]struct{}{}, endpoints: map[crypto.PublicKey]struct{}{}, presence: map[crypto.PublicKey]struct{}{},
		cues: map[[2]crypto.PublicKey]struct{}{}, self: s.id,
	}
}

// applyBatch applies what b asks for; an error means a read failed.
func (s *Server) applyBatch(ctx context.Context, b *followBatch) error {
	var errs []error
	if b.resync {
		errs = append(errs, s.resync(ctx))
	}
	if b.policy && !b.resync {
		errs = append(errs, s.followPolicy(ctx))
	}
	for key := range b.nodes {
		errs = append(errs, s.followNode(ctx, key))
	}
	for key := range b.endpoints {
		if _, again := b.nodes[key]; !again {
			errs = append(errs, s.followEndpoints(ctx, key))
		}
	}
	if len(b.presence) > maxPresenceReads {
		errs = append(errs, s.followOnline(ctx))
	} else {
		for key := range b.presence {
			errs = append(errs, s.followPresence(ctx, key))
		}
	}
	if b.suspensions || b.resync {
		errs = append(errs, s.followSuspensions(ctx))
	}
	for pair := range b.cues {
		s.followCue(pair[0], pair[1])
	}
	return errors.Join(errs...)
}

// followCue cues to, connected here, to punch towards about, as the
// coordinator about streams to asked: that one cued about at the same
// moment.
func (s *Server) followCue(to, about crypto.PublicKey) {
	cued, replaced := s.hub.cueFor(to, about)
	if replaced {
		s.met.limited.WithLabelValues(limitedCues).Inc()
	}
	if cued {
		s.nodeLog.Debug("rendezvous asked by another coordinator", "from", about.Short(), "to", to.Short())
	}
}

// followNode applies a node's stored record: a registration, tags, a
// name, routes, or its removal.
func (s *Server) followNode(ctx context.Context, key crypto.PublicKey) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.Node(rctx, key)
	switch {
	case errors.Is(err, store.ErrRemoved), errors.Is(err, store.ErrNotFound):
		if s.hub.has(key) {
			s.dropNode(key)
			s.log.Info("node removed through another coordinator", "key", key.Short())
		}
	case err != nil:
		return s.followFailed(ctx, "read a node another coordinator changed", err)
	default:
		s.applyRecord(n)
	}
	return nil
}

// adopt applies the record of a node that registered through another
// coordinator, as its notice will.
func (s *Server) adopt(n store.Node) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.applyRecord(n)
}

// applyRecord puts a node's stored record in the hub, unless the hub
// already holds it. Caller holds writeMu.
func (s *Server) applyRecord(n store.Node) {
	cur, ok := s.hub.record(n.Key)
	if ok && s.hub.session(n.Key) != nil {
		// upsert keeps these: they are this coordinator's to store.
		n.Endpoints, n.NAT = cur.Endpoints, cur.NAT
	}
	if ok && sameRecord(cur, n) {
		return
	}
	s.hub.upsert(n, s.withNode(&n))
	s.log.Info("node changed through another coordinator", "node", n.Name, "key", n.Key.Short())
}

// sameRecord reports whether two records of a node differ only in what
// the hub keeps itself (presence).
func sameRecord(a, b store.Node) bool {
	a.LastSeen, b.LastSeen = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// followEndpoints applies a node's stored candidates, as setEndpoints
// does for a node connected here (whose own reports are newer).
func (s *Server) followEndpoints(ctx context.Context, key crypto.PublicKey) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	n, err := s.store.Node(rctx, key)
	switch {
	case errors.Is(err, store.ErrRemoved), errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return s.followFailed(ctx, "read the candidates another coordinator stored", err)
	}
	cur, curNAT, ok := s.hub.endpoints(key)
	if ok && s.hub.session(key) == nil && !(reflect.DeepEqual(cur, n.Endpoints) && equalNAT(curNAT, n.NAT)) {
		s.hub.setEndpoints(key, n.Endpoints, n.NAT)
	}
	return nil
}

// followPolicy puts the newest stored policy in force, unless it is the
// one in force.
func (s *Server) followPolicy(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	v, err := s.store.Policy(rctx, 0)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return s.followFailed(ctx, "read the policy another coordinator set", err)
	case v.Version == s.hub.policyVersion():
		return nil
	}
	var pol *policy.Policy
	if v.Text != "" {
		if pol, err = policy.Parse(policyFile, []byte(v.Text)); err != nil {
			// Another coordinator, of a newer meshnode, set what this one
			// can't read: the policy in force stays, and the log says so.
			s.log.Error("the access policy another coordinator set is not valid for this meshnode; the previous one stays in force until this coordinator is upgraded", "version", v.Version, "err", err)
			return nil
		}
	}
	s.applyPolicy(v.Version, pol)
	return nil
}

// resync reads the whole mesh again, when notices may have been missed
// (the listening connection was lost, or they came faster than they were
// applied): each node whose record differs, or that is gone, is applied
// as its notice would have been; then the policy.
func (s *Server) resync(ctx context.Context) error {
	if err := s.resyncNodes(ctx); err != nil {
		return err
	}
	if err := s.followPolicy(ctx); err != nil {
		return err
	}
	return s.followOnline(ctx)
}

func (s *Server) resyncNodes(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	nodes, err := s.store.Nodes(rctx)
	if err != nil {
		return s.followFailed(ctx, "read the mesh again after missed changes", err)
	}
	stored := make(map[crypto.PublicKey]bool, len(nodes))
	for _, n := range nodes {
		stored[n.Key] = true
		s.applyRecord(n)
	}
	for _, key := range s.hub.keys() {
		if !stored[key] {
			s.dropNode(key)
		}
	}
	return nil
}

// followFailed logs a failed read, unless the coordinator is stopping,
// and returns it.
func (s *Server) followFailed(ctx context.Context, what string, err error) error {
	if ctx.Err() == nil {
		s.log.Warn(what+"; reading the mesh again shortly", "err", err)
	}
	return err
}
