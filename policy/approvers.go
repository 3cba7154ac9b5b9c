package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// Keys of auto_approvers.
const (
	approverRoutes = "routes"
	approverExit   = "exit_node"
)

var approverKeys = []string{approverRoutes, approverExit}

// autoApprovers is the policy's auto_approvers: the routes approved as
// soon as a node holding one of the tags advertises them, without
// `meshnode routes approve`.
//
//	auto_approvers:
//	  routes:
//	    192.168.10.0/24: [tag:office]   # the LAN, and any part of it
//	  exit_node: [tag:exit]             # 0.0.0.0/0 and ::/0
//
// Only tags approve: the administrator grants them (join tokens, `meshnode
// nodes tag`), while a node chooses its own name when it joins, so a name
// could be taken by whoever joins first.
type autoApprovers struct {
	routes []routeApprover
	exit   []selector // kindTag only
}

// routeApprover approves a node's routes within prefix when it holds one
// of tags.
type routeApprover struct {
	prefix netip.Prefix
	tags   []selector // kindTag only
}

// selectors are every tag the approvers name, for warnings.
func (a *autoApprovers) selectors() []selector {
	out := slices.Clone(a.exit)
	for _, r := range a.routes {
		out = append(out, r.tags...)
	}
	return out
}

// AutoApproves reports whether the policy's auto_approvers approve route
// p of a node holding tags: an exit route (0.0.0.0/0, ::/0) when a tag is
// under exit_node, any other when it lies within a prefix under routes
// whose list holds a tag. False without a policy.
func (p *Policy) AutoApproves(tags []string, route netip.Prefix) bool {
	if p == nil {
		return false
	}
	if wire.IsExitRoute(route) {
		return holdsAny(tags, p.approvers.exit)
	}
	for _, r := range p.approvers.routes {
		if r.prefix.Addr().BitLen() == route.Addr().BitLen() && r.prefix.Bits() <= route.Bits() &&
			r.prefix.Contains(route.Addr()) && holdsAny(tags, r.tags) {
			return true
		}
	}
	return false
}

// HasAutoApprovers reports whether the policy approves any route by tag.
func (p *Policy) HasAutoApprovers() bool {
	return p != nil && (len(p.approvers.routes) > 0 || len(p.approvers.exit) > 0)
}

func holdsAny(tags []string, sel []selector) bool {
	return slices.ContainsFunc(sel, func(s selector) bool { return slices.Contains(tags, s.name) })
}

// autoApprovers reads auto_approvers.
func (ps *parser) autoApprovers(n *yaml.Node) autoApprovers {
	var out autoApprovers
	ps.mapping(n, "auto_approvers", approverKeys, func(key string, _, v *yaml.Node) {
		if key == approverExit {
			out.exit = ps.approverTags(v, "auto_approvers exit_node")
			return
		}
		ps.mapping(v, "auto_approvers routes", nil, func(text string, k, v *yaml.Node) {
			what := fmt.Sprintf("auto_approvers routes %q", text)
			if len(out.routes) == MaxEntries {
				ps.errorf(k, "auto_approvers routes: more than %d prefixes: approve wider ones", MaxEntries)
				return
			}
			p, msg := parsePrefix(text)
			switch {
			case msg != "":
				ps.errorf(k, "%s: %s", what, msg)
				return
			case wire.IsExitRoute(p):
				ps.errorf(k, "%s: that is an exit node's route: list exit nodes' tags under exit_node, and LAN routes by their prefixes", what)
				return
			}
			out.routes = append(out.routes, routeApprover{prefix: p, tags: ps.approverTags(v, what)})
		})
	})
	return out
}

// approverTags reads the tags of one approver: tag:X entries only.
func (ps *parser) approverTags(n *yaml.Node, what string) []selector {
	var out []selector
	for _, s := range ps.entries(n, what) {
		if s.kind != kindTag {
			ps.errorAt(s.at, "%s: %q: only tags approve routes (tag:X): the administrator grants tags, while a node chooses its own name; approve one node's routes with 'meshnode routes approve'", what, s.text)
			continue
		}
		out = append(out, s)
	}
	return out
}
