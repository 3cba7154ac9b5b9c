package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// ErrRouteUnknown is returned for an approval of a route the node does not
// advertise, or a rejection of one it neither advertises nor has approved.
var ErrRouteUnknown = store.ErrRouteUnknown

// RouteInfo is one route of a node, as `meshnode routes list` shows it.
type RouteInfo struct {
	Node       string           `json:"node"`
	PublicKey  crypto.PublicKey `json:"public_key"`
	Online     bool             `json:"online"`
	Prefix     netip.Prefix     `json:"prefix"`
	Advertised bool             `json:"advertised"`
	Approved   bool             `json:"approved"`
	ApprovedAt time.Time        `json:"approved_at,omitzero"`
	// Primary: peers send this prefix through this node. An exit route is
	// never primary: each peer's user chooses an exit node.
	Primary bool `json:"primary"`
}

// routeInfos lists n's routes, advertised or approved, in wire order;
// primary says which prefixes peers send through n.
func routeInfos(n store.Node, online bool, primary func(netip.Prefix) bool) []RouteInfo {
	all := slices.Clone(n.Advertised)
	for _, a := range n.Approved {
		if !slices.Contains(all, a.Prefix) {
			all = append(all, a.Prefix)
		}
	}
	wire.SortRoutes(all)
	out := make([]RouteInfo, 0, len(all))
	for _, p := range all {
		since, approved := n.ApprovedSince(p)
		out = append(out, RouteInfo{
			Node: n.Name, PublicKey: n.Key, Online: online, Prefix: p,
			Advertised: slices.Contains(n.Advertised, p),
			Approved:   approved, ApprovedAt: since,
			Primary: primary(p),
		})
	}
	return out
}

// newAutoApprover is cfg's auto_approve_routes, its tags checked as tags.
func newAutoApprover(cfg config.Coordinator) (store.AutoApprover, error) {
	rules, err := cfg.AutoApprovals()
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if err := ValidateTags([]string{r.Tag}); err != nil {
			return nil, fmt.Errorf("auto_approve_routes: %w", err)
		}
	}
	return autoApprover(rules), nil
}

// autoApprover is auto_approve_routes as the store applies it: a route
// within an entry's prefix (never an exit route) of a node holding the
// entry's tag, or an exit route of a node holding a TAG=exit entry's tag.
// It is the one place that decides approval without the administrator.
func autoApprover(rules []config.AutoApproval) store.AutoApprover {
	if len(rules) == 0 {
		return nil
	}
	return func(tags []string, p netip.Prefix) bool {
		for _, r := range rules {
			if !slices.Contains(tags, r.Tag) {
				continue
			}
			if wire.IsExitRoute(p) {
				if r.Exit {
					return true
				}
				continue
			}
			if !r.Exit && r.Prefix.Addr().BitLen() == p.Addr().BitLen() && r.Prefix.Bits() <= p.Bits() && r.Prefix.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
}

// approverWith is cfg (auto_approve_routes) together with pol's
// auto_approvers: a route either approves is approved.
func approverWith(cfg store.AutoApprover, pol *policy.Policy) store.AutoApprover {
	if !pol.HasAutoApprovers() {
		return cfg
	}
	return func(tags []string, p netip.Prefix) bool {
		return cfg != nil && cfg(tags, p) || pol.AutoApproves(tags, p)
	}
}

// autoApproveTagged approves the advertised routes that the node's new
// tags auto-approve and its old ones did not: a tag given later counts as
// if the node had held it when it advertised them.
func autoApproveTagged(ctx context.Context, st store.Store, auto store.AutoApprover, oldTags []string, n store.Node) (store.Node, error) {
	return autoApproveNew(ctx, st, n, auto, oldTags, auto)
}

// autoApproveNew approves n's advertised routes that now approves for
// its tags and was did not for wasTags (nil approves nothing). Approval
// follows changes only: a route the administrator rejected stays rejected
// until an approver newly covers it.
func autoApproveNew(ctx context.Context, st store.Store, n store.Node, was store.AutoApprover, wasTags []string, now store.AutoApprover) (store.Node, error) {
	if now == nil {
		return n, nil
	}
	var approve []netip.Prefix
	for _, p := range n.Advertised {
		if _, ok := n.ApprovedSince(p); !ok && now(n.Tags, p) && (was == nil || !was(wasTags, p)) {
			approve = append(approve, p)
		}
	}
	if len(approve) == 0 {
		return n, nil
	}
	return st.UpdateRoutes(ctx, n.Name, approve, nil, time.Now())
}

// approveForPolicy approves, in st, the advertised routes that next's
// auto_approvers approve and prev's did not (cfg's auto_approve_routes
// counting for both), and returns the nodes it changed.
func approveForPolicy(ctx context.Context, st store.Store, cfg store.AutoApprover, prev, next *policy.Policy) ([]store.Node, error) {
	if !next.HasAutoApprovers() {
		return nil, nil
	}
	nodes, err := st.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	was, now := approverWith(cfg, prev), approverWith(cfg, next)
	var changed []store.Node
	for _, n := range nodes {
		m, err := autoApproveNew(ctx, st, n, was, n.Tags, now)
		if err != nil {
			return changed, fmt.Errorf("auto-approve the routes of %s: %w", n.Name, err)
		}
		if len(m.Approved) != len(n.Approved) {
			changed = append(changed, m)
		}
	}
	return changed, nil
}

// setAdvertised stores the routes a node reports and pushes what it now
// serves. Routes that CheckRoutes refuses are not stored and the node's
// stream stays: its candidates in the same report are good (the node
// checks its routes at start, so only a broken or hostile one sends such).
func (s *Server) setAdvertised(ctx context.Context, key crypto.PublicKey, routes []netip.Prefix) {
	if err := wire.CheckRoutes(routes, []netip.Prefix{s.cfg.Network, s.cfg.NetworkV6}); err != nil {
		s.nodeLog.Warn("advertised routes refused", "node", key.Short(), "err", truncate(err.Error(), maxErrorQuote))
		return
	}
	sorted := slices.Clone(routes)
	wire.SortRoutes(sorted)
	if cur, ok := s.hub.advertised(key); !ok || slices.Equal(cur, sorted) {
		return
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.SetAdvertisedRoutes(ctx, key, sorted, s.approver(), time.Now())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			s.nodeLog.Warn("store advertised routes", "node", key.Short(), "err", err)
		}
		return
	}
	s.hub.setRoutes(n, s.withNode(&n))
	s.log.Info("node advertises routes", "node", n.Name, "advertised", n.Advertised, "serves", n.Serves())
}

// approver approves routes as the coordinator's auto_approve_routes and
// the policy in force's auto_approvers say. Caller holds writeMu, so the
// policy stays the one in force until the approval is stored.
func (s *Server) approver() store.AutoApprover {
	return approverWith(s.autoApprove, s.hub.policy())
}

// approveForPolicy approves the routes that the policy just set newly
// auto-approves, and pushes them. Caller holds writeMu.
func (s *Server) approveForPolicy(ctx context.Context, prev, next *policy.Policy) {
	changed, err := approveForPolicy(ctx, s.store, s.autoApprove, prev, next)
	if err != nil {
		s.log.Warn("auto-approving routes under the new policy", "err", err)
	}
	for _, n := range changed {
		s.hub.setRoutes(n, s.withNode(&n))
		s.log.Info("node routes auto-approved by the policy", "node", n.Name, "serves", n.Serves())
	}
}

// Routes lists every node's routes, by node name.
func (s *Server) Routes(context.Context) ([]RouteInfo, error) { return s.hub.routeInfos(nil), nil }

// ApproveRoutes approves routes the named node advertises; it serves them,
// and peers route them through it, at once.
func (s *Server) ApproveRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	return s.updateRoutes(ctx, name, prefixes, nil)
}

// RejectRoutes withdraws the approval of the named node's routes: peers
// stop routing them through it, and it stops forwarding to them, at once.
func (s *Server) RejectRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	return s.updateRoutes(ctx, name, nil, prefixes)
}

func (s *Server) updateRoutes(ctx context.Context, name string, approve, reject []netip.Prefix) ([]RouteInfo, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.UpdateRoutes(ctx, name, approve, reject, time.Now())
	if err != nil {
		return nil, err
	}
	s.hub.setRoutes(n, s.withNode(&n))
	s.log.Info("node routes changed", "node", n.Name, "approved", approve, "rejected", reject, "serves", n.Serves())
	return s.hub.routeInfos(&n.Key), nil
}

// advertised is what a node advertises, as stored; ok is false when it is
// not an active node.
func (h *hub) advertised(key crypto.PublicKey) (routes []netip.Prefix, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[key]
	if n == nil {
		return nil, false
	}
	return n.Advertised, true
}

// setRoutes records a node's routes after a store write, with next the
// access policy resolved with them (a rule naming a prefix applies at
// the node that serves it), and pushes the node to its peers and to
// itself (it serves what is approved), then moves the primaries that
// changed with them.
func (h *hub) setRoutes(stored store.Node, next access) {
	h.adminChanged(stored.Key, next, func(n *store.Node) {
		n.Advertised, n.Approved = stored.Advertised, stored.Approved
	})
}

// routeInfos is the routes of one node (only), or of every node, by name.
func (h *hub) routeInfos(only *crypto.PublicKey) []RouteInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []RouteInfo
	for _, n := range h.nodes {
		if only != nil && n.Key != *only {
			continue
		}
		primary := func(p netip.Prefix) bool { return h.primary[p] == n.Key }
		out = append(out, routeInfos(*n, h.isOnline(n.Key), primary)...)
	}
	// Stable: each node's routes stay in wire order.
	slices.SortStableFunc(out, func(a, b RouteInfo) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// primaryRoutes are the prefixes peers send through n. Caller holds mu.
func (h *hub) primaryRoutes(n *store.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range n.Serves() {
		if h.primary[p] == n.Key {
			out = append(out, p)
		}
	}
	return out
}

// mayServe reports whether n may serve a route: only then can its
// arrival, presence or leaving move a primary.
func mayServe(n *store.Node) bool { return n != nil && len(n.Approved) > 0 && len(n.Advertised) > 0 }

// reelect makes every served prefix's primary afresh (electPrimaries) and
// pushes the nodes whose primaries changed, to their peers and to
// themselves. Caller holds mu; it runs after every change of routes, and
// of the presence of a node that may serve one.
func (h *hub) reelect() {
	cands := make(map[netip.Prefix][]candidate)
	for _, n := range h.nodes {
		if !mayServe(n) {
			continue
		}
		for _, p := range n.Serves() {
			if wire.IsExitRoute(p) {
				continue
			}
			since, _ := n.ApprovedSince(p)
			cands[p] = append(cands[p], candidate{key: n.Key, online: h.isOnline(n.Key), since: since})
		}
	}
	next := electPrimaries(cands, h.primary)
	moved := make(map[crypto.PublicKey]bool)
	for p, k := range h.primary {
		if next[p] != k {
			moved[k] = true
		}
	}
	for p, k := range next {
		if h.primary[p] != k {
			moved[k] = true
		}
	}
	h.primary = next
	for k := range moved {
		if n := h.nodes[k]; n != nil {
			h.changed(n)
			h.changedSelf(n)
		}
	}
}

// candidate is a node serving a prefix.
type candidate struct {
	key    crypto.PublicKey
	online bool
	since  time.Time // when the prefix was approved for it
}

// electPrimaries chooses, for each prefix, the node peers route it
// through: the one chosen before while it still serves it and is online
// (or none of the others is), so a new router never moves live traffic;
// else an online one, the first approved (the lowest key among equals);
// else, with none online, the first approved, which peers keep routing to
// until one comes back.
func electPrimaries(cands map[netip.Prefix][]candidate, prev map[netip.Prefix]crypto.PublicKey) map[netip.Prefix]crypto.PublicKey {
	next := make(map[netip.Prefix]crypto.PublicKey, len(cands))
	for p, cs := range cands {
		anyOnline := slices.ContainsFunc(cs, func(c candidate) bool { return c.online })
		if i := slices.IndexFunc(cs, func(c candidate) bool { return c.key == prev[p] }); i >= 0 && (cs[i].online || !anyOnline) {
			next[p] = cs[i].key
			continue
		}
		var best *candidate
		for i := range cs {
			c := &cs[i]
			if anyOnline && !c.online {
				continue
			}
			if best == nil || c.since.Before(best.since) || c.since.Equal(best.since) && bytes.Compare(c.key[:], best.key[:]) < 0 {
				best = c
			}
		}
		next[p] = best.key
	}
	return next
}
