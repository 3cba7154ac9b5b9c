package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// The access policy (package policy) decides who may reach whom. The
// coordinator keeps its versions in the store, resolves the newest
// against the nodes whenever either changes, and pushes each node its
// filter and a peer map of only the nodes it may see (hub.transition).
// Rendezvous cues and relaying follow the same visibility (hub.peers).

// ErrInvalidPolicy marks a policy that can't be set: it doesn't parse,
// or it can't be applied to the mesh (see policy.Resolve).
var ErrInvalidPolicy = errors.New("the access policy is not valid")

// policyFile names the policy in errors when no file name is known.
const policyFile = "policy"

// PolicyInfo is a stored version of the access policy.
type PolicyInfo struct {
	Version uint64    `json:"version"`
	Text    string    `json:"text"` // as written; "" when this version removed the policy
	Created time.Time `json:"created"`
	// Warnings say what the policy names that no node matches yet; set
	// when the policy is set.
	Warnings []string `json:"warnings,omitempty"`
}

func toPolicyInfo(v store.PolicyVersion) PolicyInfo {
	return PolicyInfo{Version: v.Version, Text: v.Text, Created: v.Created}
}

// access is the policy the hub applies: parsed, with its version, and
// resolved against the hub's nodes.
type access struct {
	pol     *policy.Policy // nil: no policy, everyone reaches everyone
	version uint64         // 0: none was ever set
	res     *policy.Resolved
}

// network is the overlay's pools as the policy knows them.
func (s *Server) network() policy.Network {
	return policy.Network{V4: s.cfg.Network, V6: s.cfg.NetworkV6}
}

// policyNode is a node as the policy sees it.
func policyNode(n *store.Node) policy.Node {
	return policy.NodeOf(toWire(*n, false))
}

// checkPolicy parses text ("" : no policy) and resolves it against nodes,
// as a new policy must: any error refuses it. It returns the policy and
// its warnings.
func checkPolicy(text string, nodes []policy.Node, net policy.Network) (*policy.Policy, []string, error) {
	if text == "" {
		return nil, nil, nil
	}
	pol, err := policy.Parse(policyFile, []byte(text))
	if err == nil {
		_, err = policy.Resolve(pol, 0, nodes, net)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w:\n%w", ErrInvalidPolicy, err)
	}
	return pol, pol.Warnings(nodes), nil
}

// loadAccess reads the newest policy from the store, for a starting
// coordinator. A stored policy that no longer parses stops it: running
// without would allow what the administrator denied.
func loadAccess(ctx context.Context, st store.Store, nodes []store.Node, net policy.Network, log *slog.Logger) (access, error) {
	v, err := st.Policy(ctx, 0)
	if errors.Is(err, store.ErrNotFound) {
		return access{res: resolveOpen(0)}, nil
	}
	if err != nil {
		return access{}, err
	}
	acc := access{version: v.Version}
	if v.Text != "" {
		if acc.pol, err = policy.Parse(policyFile, []byte(v.Text)); err != nil {
			return access{}, fmt.Errorf("the stored access policy (version %d) is not valid for this meshnode: %w\nset a valid one with 'meshnode policy set FILE', or remove it with 'meshnode policy clear', while the coordinator is stopped", v.Version, err)
		}
	}
	pn := make([]policy.Node, len(nodes))
	for i := range nodes {
		pn[i] = policyNode(&nodes[i])
	}
	if acc.res, err = policy.Resolve(acc.pol, acc.version, pn, net); err != nil {
		log.Error("access policy: parts of it can't be applied and deny instead", "version", acc.version, "err", err)
	}
	return acc, nil
}

// resolveOpen is the access without a policy.
func resolveOpen(version uint64) *policy.Resolved {
	res, _ := policy.Resolve(nil, version, nil, policy.Network{})
	return res
}

// accessAfter is the hub's policy as it applies once the node key is
// now (nil: it left): resolved for that node's change alone
// (policy.Resolved.Update), at the cost of what the node sees rather
// than of the mesh. Caller holds writeMu, so no other change to the
// nodes or the policy comes between this and applying the result. What
// the policy can't apply to a node fails closed and is logged.
func (s *Server) accessAfter(key crypto.PublicKey, now *store.Node) access {
	acc, was := s.hub.accessFor(key)
	var pn *policy.Node
	if now != nil {
		n := policyNode(now)
		pn = &n
	}
	res, err := acc.res.Update(was, pn)
	if err != nil {
		s.log.Error("access policy: parts of it can't be applied and deny instead", "version", acc.version, "err", err)
	}
	acc.res = res
	return acc
}

// withNode is the hub's policy once n is stored: accessAfter for n.
func (s *Server) withNode(n *store.Node) access { return s.accessAfter(n.Key, n) }

func sortedNodes(m map[crypto.PublicKey]policy.Node) []policy.Node {
	out := make([]policy.Node, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b policy.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SetPolicy checks text, stores it as the newest version of the access
// policy ("" removes the policy) and applies it: every connected node
// gets its new filter, and its peer map gains and loses the nodes it may
// now see, in its next peers message.
func (s *Server) SetPolicy(ctx context.Context, text string) (PolicyInfo, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, nodes := s.hub.accessInput()
	pn := sortedNodes(nodes)
	pol, warnings, err := checkPolicy(text, pn, s.network())
	if err != nil {
		return PolicyInfo{}, err
	}
	v, err := s.store.SetPolicy(ctx, text, time.Now())
	if err != nil {
		return PolicyInfo{}, err
	}
	prev := s.hub.policy()
	// checkPolicy resolved the same policy against the same nodes: it
	// applies whole.
	s.applyPolicy(v.Version, pol)
	s.approveForPolicy(ctx, prev, pol)
	info := toPolicyInfo(v)
	info.Warnings = warnings
	return info, nil
}

// CheckPolicy checks text as SetPolicy would, against the hub's nodes,
// without setting it: the policy and its warnings, or every problem.
func (s *Server) CheckPolicy(text string) (*policy.Policy, []string, error) {
	_, nodes := s.hub.accessInput()
	return checkPolicy(text, sortedNodes(nodes), s.network())
}

// AskPolicy answers whether node src may reach target
// (DST[:PORT][/PROTO]) under the policy in force, and by which rule, as
// 'meshnode policy test' does.
func (s *Server) AskPolicy(src, target string) (string, error) {
	acc, _ := s.hub.accessInput()
	return acc.res.Ask(s.hub.list(), src, target)
}

// AskDraftPolicy answers as AskPolicy does, under the policy text instead
// of the one in force ("" is no policy): a draft tested before it is set.
func (s *Server) AskDraftPolicy(text, src, target string) (string, error) {
	_, nodes := s.hub.accessInput()
	pn := sortedNodes(nodes)
	pol, _, err := checkPolicy(text, pn, s.network())
	if err != nil {
		return "", err
	}
	res, err := policy.Resolve(pol, 0, pn, s.network())
	if err != nil {
		return "", err
	}
	return res.Ask(s.hub.list(), src, target)
}

// applyPolicy puts pol, stored as version, in force: resolved against
// the hub's nodes, every connected node gets its new filter and map.
// What it can't apply to a node fails closed and is logged, as in
// accessAfter. Caller holds writeMu.
func (s *Server) applyPolicy(version uint64, pol *policy.Policy) {
	_, nodes := s.hub.accessInput()
	res, err := policy.Resolve(pol, version, sortedNodes(nodes), s.network())
	if err != nil {
		s.log.Error("access policy: parts of it can't be applied and deny instead", "version", version, "err", err)
	}
	s.hub.setAccess(access{pol: pol, version: version, res: res})
	s.log.Info("access policy set", "version", version, "rules", pol.Rules(), "none", pol == nil)
}

// Policy returns a stored version of the access policy, the newest for 0.
func (s *Server) Policy(ctx context.Context, version uint64) (PolicyInfo, error) {
	return storedPolicy(ctx, s.store, version)
}

func storedPolicy(ctx context.Context, st store.Store, version uint64) (PolicyInfo, error) {
	v, err := st.Policy(ctx, version)
	if err != nil {
		return PolicyInfo{}, err
	}
	return toPolicyInfo(v), nil
}

// setAccess applies a new policy. Caller holds writeMu.
func (h *hub) setAccess(next access) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.transition(next, nil, nil)
}

// policy is the policy applied; nil: none.
func (h *hub) policy() *policy.Policy {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acc.pol
}

// policyVersion is the version of the policy applied.
func (h *hub) policyVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acc.version
}

// accessFor is the policy the hub applies and the name of the node key
// ("" when it is not a node), for resolving its change.
func (h *hub) accessFor(key crypto.PublicKey) (access, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.nodes[key]; n != nil {
		return h.acc, n.Name
	}
	return h.acc, ""
}

// accessInput is the policy the hub applies and its nodes as the policy
// sees them, for resolving a change. Caller holds writeMu.
func (h *hub) accessInput() (access, map[crypto.PublicKey]policy.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	nodes := make(map[crypto.PublicKey]policy.Node, len(h.nodes))
	for k, n := range h.nodes {
		nodes[k] = policyNode(n)
	}
	return h.acc, nodes
}

// peers decides whether two nodes are in each other's peer maps, which
// also decides whether the coordinator cues them to punch to each other
// and relays between them: the policy lets one reach the other. A
// designated relay node is every node's peer whatever the policy says:
// every node must see it to relay through it (both ends of a relayed
// pair use the same relay, the lowest-key one they see), and the relay
// must see them to serve them. It reaches, and is reached, only as the
// policy allows: the filters at both ends decide.
func peersUnder(res *policy.Resolved, a, b *store.Node) bool {
	return a.Key != b.Key && (res.Visible(a.Name, b.Name) || isRelay(a) || isRelay(b))
}

func isRelay(n *store.Node) bool { return slices.Contains(n.Tags, RelayTag) }

// peers applies peersUnder to the hub's policy. Caller holds mu.
func (h *hub) peers(a, b *store.Node) bool { return peersUnder(h.acc.res, a, b) }

// welcomeFilter is n's filter for its welcome: none without a policy.
// Caller holds mu.
func (h *hub) welcomeFilter(n *store.Node) *wire.Filter {
	if h.acc.res.Open() {
		return nil
	}
	return h.acc.res.Filter(n.Name)
}

// transition moves the hub to next after a node changed from was to now
// (was nil: it joined; now nil: it left; both nil: only the policy
// changed), with h.nodes already updated. Every connected node's map
// gains the nodes it may now see and loses those it no longer may, a
// changed node still seen is sent again, and each node whose filter
// changed gets the new one. Caller holds mu, and for a node's change
// took the visibility index (h.index) before changing h.nodes.
func (h *hub) transition(next access, was, now *store.Node) {
	prev := h.acc
	h.acc = next
	h.version++
	if either(now, was) == nil {
		h.retellAll(prev)
	} else {
		h.moved(prev, was, now)
	}
	h.tellRelayPairs()
}

// moved is transition for one node's change, through the visibility
// index: only pairs with the changed node can change visibility, and
// only the filters of the nodes that see it, before or after (policy.
// Resolved.Update), so it visits those alone. Caller holds mu.
func (h *hub) moved(prev access, was, now *store.Node) {
	key := either(now, was).Key
	var touched []*store.Node
	if was != nil {
		touched = slices.Clone(h.seenBy(was))
	}
	h.vis.move(h.acc.res, was, now)
	h.changes.visibility(h.version, key, was == nil)
	if now != nil {
		touched = append(touched, h.seenBy(now)...)
		touched = append(touched, now)
	}
	self := h.sessions[key]
	done := make(map[crypto.PublicKey]bool, len(touched))
	for _, o := range touched {
		if done[o.Key] {
			continue
		}
		done[o.Key] = true
		if o.Key != key {
			if self != nil {
				h.retell(self, prev, was, now, o, o)
			}
			if s := h.sessions[o.Key]; s != nil {
				h.retell(s, prev, o, o, was, now)
			}
		}
		prevName := o.Name
		if o.Key == key && was != nil {
			prevName = was.Name
		}
		h.refilter(prev, o.Key, prevName)
	}
}

// retellAll is transition for a policy change: any pair may change,
// every session is visited, and the visibility index is built anew.
// Caller holds mu.
func (h *hub) retellAll(prev access) {
	h.vis = nil
	h.changes.reset(h.version)
	for k, s := range h.sessions {
		if a := h.nodes[k]; a != nil {
			for _, o := range h.nodes {
				h.retell(s, prev, a, a, o, o)
			}
			h.refilter(prev, k, a.Name)
		}
	}
}

// refilter sends a connected node its filter if it changed from the
// one prev gave it under its name then (a renamed node's filter is the
// old name's). Caller holds mu.
func (h *hub) refilter(prev access, key crypto.PublicKey, prevName string) {
	s, a := h.sessions[key], h.nodes[key]
	if s == nil || a == nil {
		return
	}
	was, f := prev.res.Filter(prevName), h.acc.res.Filter(a.Name)
	if was != f && !policy.SameFilter(was, f) {
		s.setFilter(f, h.version)
	}
}

// relayPairs is which nodes may see each other, for the designated relay
// nodes (wire.RelayPairs), in key order; nil without a policy. Caller
// holds mu.
func (h *hub) relayPairs() *wire.RelayPairs {
	if h.acc.res.Open() {
		return nil
	}
	p := &wire.RelayPairs{Version: h.acc.version, Members: make([]wire.RelayMember, 0, len(h.nodes))}
	for _, n := range h.nodes {
		m := wire.RelayMember{Key: n.Key, Relay: isRelay(n)}
		m.Src, m.Dst, _ = h.acc.res.Membership(n.Name)
		p.Members = append(p.Members, m)
	}
	slices.SortFunc(p.Members, func(a, b wire.RelayMember) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return p
}

// tellRelayPairs sends the designated relay nodes the pairs that may see
// each other, when they changed: a relay node relays only between those.
// Caller holds mu.
func (h *hub) tellRelayPairs() {
	if h.vis != nil && h.vis.relays == 0 {
		// No relay node to tell; one that is designated gets the
		// pairs then (transition) or in its welcome.
		h.pairs = nil
		return
	}
	pairs := h.relayPairs()
	if pairs.Equal(h.pairs) {
		return
	}
	h.pairs = pairs
	if pairs == nil {
		pairs = &wire.RelayPairs{Version: h.acc.version, Open: true}
	}
	for k, s := range h.sessions {
		if n := h.nodes[k]; n != nil && isRelay(n) {
			s.setRelayPairs(pairs, h.version)
		}
	}
}

// welcomePairs is n's relay pairs for its welcome: none unless it is a
// designated relay node. Caller holds mu.
func (h *hub) welcomePairs(n *store.Node) *wire.RelayPairs {
	if !isRelay(n) {
		return nil
	}
	return h.relayPairs()
}

// retell queues to s, the stream of the node that was aWas and is aNow,
// what became of peer p (pWas before, pNow after; nil: not a node): now
// seen, it is sent (again, if it changed); no longer seen, it is removed
// with any cue naming it. Caller holds mu.
func (h *hub) retell(s *session, prev access, aWas, aNow, pWas, pNow *store.Node) {
	before := aWas != nil && pWas != nil && peersUnder(prev.res, aWas, pWas)
	after := aNow != nil && pNow != nil && peersUnder(h.acc.res, aNow, pNow)
	switch {
	case after && (!before || pWas != pNow):
		s.upsert(pNow.Key, h.encoded(pNow), h.version)
		s.refreshCue(pNow.Key, h.cueNaming(pNow))
	case before && !after:
		s.removePeer(pWas.Key, h.version)
	}
}

// either is the first of a and b that is not nil.
func either(a, b *store.Node) *store.Node {
	if a != nil {
		return a
	}
	return b
}
