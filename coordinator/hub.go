package coordinator

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// hub is the in-memory view of the mesh: every active node and the stream
// of each connected one. Every change goes through it and is queued, as a
// delta, to each connected peer of the changed node. The store stays the
// source of truth; the hub is loaded from it at start and updated after
// each committed write.
type hub struct {
	mu    sync.Mutex
	nodes map[crypto.PublicKey]*store.Node
	// known holds the keys of nodes, updated with nodes under mu but
	// read without it: authenticating a stream (and the relay's and the
	// STUN server's checks) must not wait behind the O(N) work of
	// attaches and detaches that mu serializes.
	known    sync.Map // crypto.PublicKey → struct{}
	sessions map[crypto.PublicKey]*session
	// remote holds the nodes connected to other coordinators on the same
	// database (follow.go, presence.go); a stream here takes precedence.
	remote map[crypto.PublicKey]store.Presence
	// version counts changes; every welcome and delta carries the version
	// of the newest change it includes, so a node can tell order.
	version uint64
	// susp holds the relays suspended on reports (relayhealth.go).
	susp *suspensions
	// primary is the node peers route each served prefix through
	// (routes.go: reelect).
	primary map[netip.Prefix]crypto.PublicKey
	// acc is the access policy, resolved against nodes (access.go).
	acc access
	// pairs are the relay pairs last sent to the designated relay nodes
	// (tellRelayPairs); nil: none, or no policy.
	pairs *wire.RelayPairs
	// meshRelay is the relay every node binds to where several
	// coordinators serve the mesh (meshrelay.go); nil: this
	// coordinator's own.
	meshRelay *wire.MeshRelay
	// enc holds each node's record as its peers see it, JSON-encoded
	// once and shared by every welcome and delta that carries it
	// (encoded).
	enc map[crypto.PublicKey]encodedNode
	// vis indexes who sees whom (visibility.go); nil until first used
	// after a policy change.
	vis *visibility
	// changes are what reconnects resume from (resume.go).
	changes changes
}

// encodedNode is a node's record, encoded while the node's entry in
// hub.nodes was n: a changed record gets a new entry (upsert,
// adminChanged) or goes through changed, which drops the encoding.
type encodedNode struct {
	n *store.Node
	b json.RawMessage
}

func newHub(nodes []store.Node, acc access) *hub {
	h := &hub{
		nodes:    make(map[crypto.PublicKey]*store.Node, len(nodes)),
		sessions: make(map[crypto.PublicKey]*session),
		remote:   make(map[crypto.PublicKey]store.Presence),
		susp:     newSuspensions(defaultSuspendPolicy()),
		acc:      acc,
		enc:      make(map[crypto.PublicKey]encodedNode, len(nodes)),
		changes:  newChanges(),
	}
	for i := range nodes {
		h.nodes[nodes[i].Key] = &nodes[i]
		h.known.Store(nodes[i].Key, struct{}{})
	}
	h.reelect()
	return h
}

// wireNode describes n as nodes see it. Caller holds mu.
func (h *hub) wireNode(n *store.Node) wire.Node {
	st := h.stream(n.Key)
	w := toWire(*n, st.online)
	w.PrimaryRoutes = h.primaryRoutes(n)
	if st.tcp.IsValid() {
		w.Endpoints = append(w.Endpoints, wire.Endpoint{Addr: st.tcp, Kind: wire.EndpointTCP})
	}
	if until, suspended := h.susp.suspendedUntil(n.Key, time.Now()); suspended {
		w.RelaySuspendedUntil = until
	} else if h.offersRelay(n) {
		w.Relay = st.relay.String()
	}
	return w
}

// encoded is wireNode(n), JSON-encoded: from the cache unless n changed
// since. Caller holds mu.
func (h *hub) encoded(n *store.Node) json.RawMessage {
	if e, ok := h.enc[n.Key]; ok && e.n == n {
		return e.b
	}
	b, err := json.Marshal(h.wireNode(n))
	if err != nil {
		// Every field of wire.Node has a JSON encoding.
		panic(fmt.Sprintf("encode node %s: %v", n.Key.Short(), err))
	}
	h.enc[n.Key] = encodedNode{n: n, b: b}
	return b
}

// streamInfo is what a node's stream, here or at another coordinator,
// adds to its record.
type streamInfo struct {
	online     bool
	tcp, relay netip.AddrPort
}

// stream is key's stream: this coordinator's, else another's. Caller
// holds mu.
func (h *hub) stream(key crypto.PublicKey) streamInfo {
	if sess := h.sessions[key]; sess != nil {
		return streamInfo{online: true, tcp: sess.tcp, relay: sess.relay}
	}
	if p, ok := h.remote[key]; ok {
		return streamInfo{online: true, tcp: p.TCP, relay: p.Relay}
	}
	return streamInfo{}
}

// isOnline reports whether key has a stream, here or at another
// coordinator. Caller holds mu.
func (h *hub) isOnline(key crypto.PublicKey) bool { return h.stream(key).online }

// offersRelay reports whether n's relay is offered to its peers, unless
// suspended: n announced one on its stream and the administrator
// designated it. Caller holds mu.
func (h *hub) offersRelay(n *store.Node) bool {
	return h.stream(n.Key).relay.IsValid() && slices.Contains(n.Tags, RelayTag)
}

func toWire(n store.Node, online bool) wire.Node {
	var addrs []netip.Addr
	for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
		if a.IsValid() {
			addrs = append(addrs, a)
		}
	}
	return wire.Node{
		Name:      n.Name,
		PublicKey: n.Key,
		Addresses: addrs,
		Endpoints: slices.Clone(n.Endpoints),
		NAT:       n.NAT,
		Online:    online,
		LastSeen:  n.LastSeen,
		Tags:      slices.Clone(n.Tags),
		Routes:    n.Serves(),
	}
}

// changed queues n to every connected peer, and refreshes the cues
// naming n that still wait. Caller holds mu.
func (h *hub) changed(n *store.Node) {
	h.version++
	h.changes.record(h.version, n.Key)
	delete(h.enc, n.Key)
	b := h.encoded(n)
	cue := h.cueNaming(n)
	for _, o := range h.seenBy(n) {
		if s := h.sessions[o.Key]; s != nil && o.Key != n.Key {
			s.upsert(n.Key, b, h.version)
			s.refreshCue(n.Key, cue)
		}
	}
}

// changedSelf queues n its own record, which the administrator changed
// (its tags, its name) or a registration did (a token's tags): a node learns these
// only from the coordinator, and acts on them (RelayTag makes it serve as
// a relay). Its endpoints and presence are its own doing, so those
// changes are not echoed back. Caller holds mu, after changed(n).
func (h *hub) changedSelf(n *store.Node) {
	if sess := h.sessions[n.Key]; sess != nil {
		sess.setSelf(h.wireNode(n), h.version)
	}
}

// cueNaming is a punch cue naming n, with n's freshest candidates: a
// report its stream holds back (the endpoint budget) is newer than the
// stored list. Peers take a cue's list as n's; the delta with the same
// list follows once the report is stored. Caller holds mu.
func (h *hub) cueNaming(n *store.Node) wire.StreamMsg {
	key := n.Key
	eps, nat := n.Endpoints, n.NAT
	if sess := h.sessions[key]; sess != nil {
		if r, ok := sess.pendingReport(); ok {
			eps, nat = r.Endpoints, r.NAT
		}
	}
	if tcp := h.stream(key).tcp; tcp.IsValid() {
		eps = append(slices.Clone(eps), wire.Endpoint{Addr: tcp, Kind: wire.EndpointTCP})
	}
	return wire.StreamMsg{Type: wire.MsgPunch, Peer: &key, Endpoints: eps, NAT: nat}
}

// peersOf is n's full peer list, by name, encoded. Caller holds mu.
func (h *hub) peersOf(n *store.Node) []json.RawMessage {
	seen := h.seenBy(n)
	out := make([]json.RawMessage, 0, len(seen))
	for _, o := range seen {
		if o.Key != n.Key {
			out = append(out, h.encoded(o))
		}
	}
	return out
}

// upsert adds a node or replaces it with its stored record after a
// registration, or any change another coordinator made (follow.go), with
// next the access policy resolved with it. A node connected here keeps
// the candidates its stream reported: this coordinator stores them, so
// they are never older than the record read.
func (h *hub) upsert(n store.Node, next access) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index()
	old := h.nodes[n.Key]
	if old != nil && old.LastSeen.After(n.LastSeen) {
		n.LastSeen = old.LastSeen
	}
	if old != nil && h.sessions[n.Key] != nil {
		n.Endpoints, n.NAT = old.Endpoints, old.NAT
	}
	h.nodes[n.Key] = &n
	h.known.Store(n.Key, struct{}{})
	h.transition(next, old, &n)
	if mayServe(old) || mayServe(&n) {
		h.reelect()
	}
	h.changedSelf(&n)
}

// remove drops a node from every peer map, with next the access policy
// resolved without it, and returns its session, if any, for the caller
// to end.
func (h *hub) remove(key crypto.PublicKey, next access) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[key]
	if n == nil {
		return nil
	}
	h.index()
	delete(h.nodes, key)
	h.known.Delete(key)
	delete(h.enc, key)
	delete(h.changes.last, key)
	delete(h.remote, key)
	h.susp.forget(key)
	sess := h.sessions[key]
	delete(h.sessions, key)
	h.transition(next, n, nil)
	if mayServe(n) {
		h.reelect()
	}
	return sess
}

// has reports whether key is an active node, without taking mu.
func (h *hub) has(key crypto.PublicKey) bool {
	_, ok := h.known.Load(key)
	return ok
}

// attach makes sess the node's stream and returns its welcome and the
// stream it replaces: what changed since holds (the map the node holds;
// nil: none) when the hub can tell, else the full map. ok is false when
// the node is no longer active.
func (h *hub) attach(sess *session, now time.Time, stun stunOffer, holds *wire.MapVersion) (welcome outgoing, old *session, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[sess.key]
	if n == nil {
		return outgoing{}, nil, false
	}
	old = h.sessions[sess.key]
	h.sessions[sess.key] = sess
	sess.attached = now
	n.LastSeen = now
	h.presenceChanged(n)
	self := h.wireNode(n)
	msg := wire.StreamMsg{
		Type:       wire.MsgWelcome,
		Self:       &self,
		Filter:     h.welcomeFilter(n),
		RelayPairs: h.welcomePairs(n),
		Version:    h.version,
		Epoch:      h.changes.epoch,
		STUN:       stun.v4,
		STUN6:      stun.v6,
		// The relay shares the STUN ports: the primary, and the IPv6 one
		// for nodes without IPv4.
		Relay:     firstOf(stun.v4),
		Relay6:    firstOf(stun.v6),
		MeshRelay: h.meshRelay,
	}
	if ups, rems, resumed := h.resume(n, holds); resumed {
		msg.Resumed, msg.Remove = true, rems
		return outgoing{msg: msg, field: fieldUpsert, parts: ups}, old, true
	}
	return outgoing{msg: msg, field: fieldPeers, parts: h.peersOf(n)}, old, true
}

// detach ends sess's presence unless a newer stream replaced it; it reports
// whether the node went offline.
func (h *hub) detach(sess *session, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[sess.key] != sess {
		return false
	}
	delete(h.sessions, sess.key)
	if n := h.nodes[sess.key]; n != nil {
		n.LastSeen = now
		h.presenceChanged(n)
	}
	return true
}

// presenceChanged pushes n, whose stream came or went (here or at
// another coordinator), to its peers, and moves the primaries of the
// routes it may serve. Caller holds mu.
func (h *hub) presenceChanged(n *store.Node) {
	if mayServe(n) {
		h.reelect()
	}
	h.changed(n)
}

// record is a copy of an active node's record.
func (h *hub) record(key crypto.PublicKey) (store.Node, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.nodes[key]; n != nil {
		return *n, true
	}
	return store.Node{}, false
}

// keys lists the active nodes' keys.
func (h *hub) keys() []crypto.PublicKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Keys(h.nodes))
}

// session returns a node's stream, or nil when it has none.
func (h *hub) session(key crypto.PublicKey) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[key]
}

// endpoints returns a node's current candidates.
func (h *hub) endpoints(key crypto.PublicKey) ([]wire.Endpoint, *wire.NATInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[key]
	if n == nil {
		return nil, nil, false
	}
	return n.Endpoints, n.NAT, true
}

// setRelay records the relay a node announces (invalid: none) for as long
// as its session lasts, and pushes the change to its peers. Peers are
// offered it only while the node holds RelayTag; designated reports
// whether it does, changed whether the relay is new.
func (h *hub) setRelay(key crypto.PublicKey, relay netip.AddrPort) (designated, changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sess, n := h.sessions[key], h.nodes[key]
	if sess == nil || n == nil {
		return false, false
	}
	designated = slices.Contains(n.Tags, RelayTag)
	if sess.relay == relay {
		return designated, false
	}
	sess.relay = relay
	if designated {
		h.changed(n)
	}
	return designated, true
}

// setTags records a node's new tags and its routes as stored with them
// (new tags may auto-approve routes), with next the access policy
// resolved with them, and pushes the node to its peers (a relay it
// announces is offered, or withdrawn, with RelayTag; the peers that may
// see it change with the policy) and to itself (it serves as a relay, or
// stops, with RelayTag). It returns the node as its peers now see it.
func (h *hub) setTags(stored store.Node, next access) wire.Node {
	return h.adminChanged(stored.Key, next, func(n *store.Node) {
		n.Tags, n.Advertised, n.Approved = stored.Tags, stored.Advertised, stored.Approved
	})
}

// setName records a node's new name, with next the access policy
// resolved with it (names are principals), and pushes the node to its
// peers (they answer the new name in their DNS) and to itself. It
// returns the node as its peers now see it.
func (h *hub) setName(key crypto.PublicKey, name string, next access) wire.Node {
	return h.adminChanged(key, next, func(n *store.Node) { n.Name = name })
}

// adminChanged applies what the administrator (or the node, for the
// routes it advertises) changed of a node, with next the access policy
// resolved after the change, pushes the node to its peers and to itself,
// and moves the primaries that changed with its routes.
func (h *hub) adminChanged(key crypto.PublicKey, next access, edit func(*store.Node)) wire.Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.nodes[key]
	if old == nil {
		return wire.Node{}
	}
	h.index()
	n := *old
	edit(&n)
	h.nodes[key] = &n
	h.transition(next, old, &n)
	if mayServe(old) || mayServe(&n) {
		h.reelect()
	}
	h.changedSelf(&n)
	return h.wireNode(&n)
}

// tags are a node's tags; nil when it is not an active node.
func (h *hub) tags(key crypto.PublicKey) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.nodes[key]; n != nil {
		return slices.Clone(n.Tags)
	}
	return nil
}

// setEndpoints records a node's candidates and pushes them to its peers.
func (h *hub) setEndpoints(key crypto.PublicKey, eps []wire.Endpoint, nat *wire.NATInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[key]
	if n == nil {
		return
	}
	n.Endpoints, n.NAT = eps, nat
	h.changed(n)
}

// rendezvousResult says what became of a rendezvous request.
type rendezvousResult int

const (
	rendezvousCued       rendezvousResult = iota // both nodes cued
	rendezvousSkipped                            // a node offline, or not peers
	rendezvousOverBudget                         // the requester asked too often
)

// rendezvous tells both nodes to punch towards each other now, each with
// the other's current candidates. Both must be online and peers, and the
// requester within its budget (every request costs it, so a flood of
// requests naming offline or unknown nodes is bounded too). Each cue
// replaces one still waiting for the same pair; coalesced counts those.
// When to streams to another coordinator, from is cued here and via
// names that coordinator, which the caller asks to cue to (Store.Cue).
func (h *hub) rendezvous(from, to crypto.PublicKey) (res rendezvousResult, coalesced int, via string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, b := h.nodes[from], h.nodes[to]
	sa, sb := h.sessions[from], h.sessions[to]
	if sa != nil && !sa.rendezvous.Allow() {
		return rendezvousOverBudget, 0, ""
	}
	elsewhere, remote := h.remote[to]
	if a == nil || b == nil || sa == nil || sb == nil && !remote || !h.peers(a, b) {
		return rendezvousSkipped, 0, ""
	}
	if sa.cue(b.Key, h.cueNaming(b)) {
		coalesced++
	}
	if sb == nil {
		return rendezvousCued, coalesced, elsewhere.Coordinator
	}
	if sb.cue(a.Key, h.cueNaming(a)) {
		coalesced++
	}
	return rendezvousCued, coalesced, ""
}

// cueFor cues to, which streams here, to punch towards about, as another
// coordinator asked for its node about (Store.Cue): both must be nodes
// and peers here too. It reports whether a waiting cue was replaced.
func (h *hub) cueFor(to, about crypto.PublicKey) (cued, replaced bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, b, sb := h.nodes[about], h.nodes[to], h.sessions[to]
	if a == nil || b == nil || sb == nil || !h.peers(a, b) {
		return false, false
	}
	return true, sb.cue(a.Key, h.cueNaming(a))
}

// list is every active node, by name.
func (h *hub) list() []wire.Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]wire.Node, 0, len(h.nodes))
	for _, n := range h.nodes {
		out = append(out, h.wireNode(n))
	}
	slices.SortFunc(out, func(a, b wire.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// counts is the number of active and of connected nodes.
func (h *hub) counts() (nodes, online int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.nodes), len(h.sessions)
}

// online reports whether a node has a stream, here or at another
// coordinator.
func (h *hub) online(key crypto.PublicKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.isOnline(key)
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Known implements relay.Authorizer: a registered node that wasn't removed.
func (h *hub) Known(key crypto.PublicKey) bool { return h.has(key) }

// ArePeers implements relay.Authorizer.
func (h *hub) ArePeers(a, b crypto.PublicKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	na, nb := h.nodes[a], h.nodes[b]
	return na != nil && nb != nil && h.peers(na, nb)
}
