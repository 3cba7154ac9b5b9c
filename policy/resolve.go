package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/meshnode/meshnode/internal/wire"
)

// maxNodePrefixes bounds the prefixes in one node's filter, all rules
// together: about 1.5 MB of JSON, well inside the node's read limit for a
// welcome (wire.MaxCoordinatorMessage) beside its peer map.
const maxNodePrefixes = 1 << 16

// Node is a registered node as the policy sees it.
type Node struct {
	Name  string
	Tags  []string
	Addrs []netip.Addr // its overlay addresses
	// Routes are the address ranges it routes for others, once approved:
	// subnet routes, and 0.0.0.0/0 and ::/0 for an exit node. A rule
	// whose destination overlaps them is enforced at this node too, and
	// makes it visible to the rule's sources.
	Routes []netip.Prefix
}

// NodeOf is a node of the peer map as the policy sees it.
func NodeOf(n wire.Node) Node {
	return Node{Name: n.Name, Tags: n.Tags, Addrs: n.Addresses, Routes: n.Routes}
}

// Network is the overlay's address pools. "*" compiles to them, and no
// destination prefix may overlap them: members are named by name or tag.
type Network struct{ V4, V6 netip.Prefix }

func (n Network) pools() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{n.V4, n.V6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Resolved is a policy applied to the registered nodes: each node's
// filter, who sees whom, and verdicts. It is immutable.
type Resolved struct {
	version uint64
	open    bool // no policy: everything is allowed
	nodes   []Node
	index   map[string]int
	byAddr  map[netip.Addr]int
	rules   []compiled
	// Per node, the rules it is a source of, a destination of by name
	// (tag, "*"), and a destination of by name or through its routes.
	src, dstNode, dst []bitset
	filters           []*wire.Filter
}

// compiled is a rule with its entries resolved to addresses.
type compiled struct {
	*rule
	srcAddrs []netip.Prefix // the sources' addresses (the pools for "*")
	dstPfx   []netip.Prefix // destination prefixes: subnets, the internet
	dstSide  []netip.Prefix // every destination address: nodes' and dstPfx
}

// Resolve applies p (nil: no policy) at version to nodes. The Resolved
// is always usable; the error lists what it could not apply, each part
// failing closed: a destination prefix that overlaps the overlay grants
// nothing, and a node whose filter would exceed the bounds gets one that
// allows nothing. A new policy with errors should be refused; a node
// joining a mesh whose policy then fails for it is logged.
func Resolve(p *Policy, version uint64, nodes []Node, net Network) (*Resolved, error) {
	r := &Resolved{
		version: version,
		open:    p == nil,
		nodes:   slices.Clone(nodes),
		index:   make(map[string]int, len(nodes)),
		byAddr:  make(map[netip.Addr]int, 2*len(nodes)),
	}
	for i, n := range r.nodes {
		r.index[n.Name] = i
		for _, a := range n.Addrs {
			r.byAddr[a.Unmap()] = i
		}
	}
	if r.open {
		return r, nil
	}
	var errs []error
	for i := range p.rules {
		c, err := p.compileTargets(&p.rules[i], net)
		errs = append(errs, err...)
		r.rules = append(r.rules, c)
	}
	r.membership()
	pools := net.pools()
	for j := range r.rules {
		c := &r.rules[j]
		c.srcAddrs = r.addrsOf(j, c.from, r.src, pools)
		c.dstSide = sortPrefixes(append(r.addrsOf(j, c.to, r.dstNode, pools), c.dstPfx...))
	}
	r.filters = make([]*wire.Filter, len(r.nodes))
	failed := 0
	for i := range r.nodes {
		f, err := r.compileFilter(i)
		if err != nil {
			if failed++; failed <= maxErrors {
				errs = append(errs, &Error{File: p.file, Msg: err.Error()})
			}
		}
		r.filters[i] = f
	}
	if failed > maxErrors {
		errs = append(errs, &Error{File: p.file, Msg: fmt.Sprintf("and %d more nodes whose filters would exceed the bounds", failed-maxErrors)})
	}
	return r, errors.Join(errs...)
}

// compileTargets resolves a rule's destination prefixes; one that
// overlaps the overlay is an error and is left out.
func (p *Policy) compileTargets(ru *rule, net Network) (compiled, []error) {
	c := compiled{rule: ru}
	var errs []error
	for _, s := range ru.to {
		switch s.kind {
		case kindPrefix:
			if pool, ok := overlapsAny(s.prefix, net.pools()); ok {
				hint := ""
				if s.prefix.Bits() == 0 {
					hint = "; for the internet through an exit node, write internet"
				}
				errs = append(errs, &Error{File: p.file, Line: s.at.line, Column: s.at.col, Msg: fmt.Sprintf(
					"rule %s to: %q overlaps the mesh's own addresses (%v): name nodes, tags or \"*\" instead%s", ru.label, s.text, pool, hint)})
				continue
			}
			c.dstPfx = append(c.dstPfx, s.prefix)
		case kindInternet:
			c.dstPfx = append(c.dstPfx, internet(net)...)
		}
	}
	c.dstPfx = sortPrefixes(c.dstPfx)
	return c, errs
}

// membership fills each node's rule bitsets.
func (r *Resolved) membership() {
	words := (len(r.rules) + 63) / 64
	r.src, r.dstNode, r.dst = make([]bitset, len(r.nodes)), make([]bitset, len(r.nodes)), make([]bitset, len(r.nodes))
	for i, n := range r.nodes {
		r.src[i], r.dstNode[i], r.dst[i] = make(bitset, words), make(bitset, words), make(bitset, words)
		for j, c := range r.rules {
			if matches(c.from, n) {
				r.src[i].set(j)
			}
			if matches(c.to, n) {
				r.dstNode[i].set(j)
				r.dst[i].set(j)
			} else if len(routed(c.dstPfx, n.Routes)) > 0 {
				r.dst[i].set(j)
			}
		}
	}
}

// matches reports whether an entry of sels names n.
func matches(sels []selector, n Node) bool {
	for _, s := range sels {
		switch {
		case s.kind == kindAll,
			s.kind == kindNode && s.name == n.Name,
			s.kind == kindTag && slices.Contains(n.Tags, s.name):
			return true
		}
	}
	return false
}

// addrsOf is the addresses of the nodes in rule j's side (member: the
// nodes' bitsets); the pools when the side says "*".
func (r *Resolved) addrsOf(j int, sels []selector, member []bitset, pools []netip.Prefix) []netip.Prefix {
	if slices.ContainsFunc(sels, func(s selector) bool { return s.kind == kindAll }) {
		return slices.Clone(pools)
	}
	var out []netip.Prefix
	for i, n := range r.nodes {
		if member[i].has(j) {
			out = append(out, hosts(n.Addrs)...)
		}
	}
	return sortPrefixes(out)
}

// routed is the part of dst that routes carry: each overlap of a
// destination prefix and a route, the narrower of the two.
func routed(dst, routes []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, d := range dst {
		for _, rt := range routes {
			if d.Overlaps(rt) {
				if d.Bits() >= rt.Bits() {
					out = append(out, d)
				} else {
					out = append(out, rt.Masked())
				}
			}
		}
	}
	return out
}

// compileFilter is node i's filter: every rule it is a source of, with
// its own addresses as the source, and every rule it is a destination
// of, with its own addresses and routed ranges as the destination.
func (r *Resolved) compileFilter(i int) (*wire.Filter, error) {
	n := r.nodes[i]
	own := hosts(n.Addrs)
	f := &wire.Filter{Version: r.version}
	for j := range r.rules {
		c := &r.rules[j]
		if r.src[i].has(j) {
			f.Rules = c.appendRules(f.Rules, own, c.dstSide)
		}
		if r.dst[i].has(j) {
			var dst []netip.Prefix
			if r.dstNode[i].has(j) {
				dst = own
			}
			dst = sortPrefixes(append(slices.Clone(dst), routed(c.dstPfx, n.Routes)...))
			f.Rules = c.appendRules(f.Rules, c.srcAddrs, dst)
		}
	}
	total := 0
	for _, fr := range f.Rules {
		total += len(fr.Src) + len(fr.Dst)
	}
	if len(f.Rules) > wire.MaxFilterRules || total > maxNodePrefixes {
		return &wire.Filter{Version: r.version}, fmt.Errorf(
			"node %s: its filter would hold %d rules and %d prefixes, more than %d and %d; it is allowed nothing until the policy names fewer nodes per rule (\"*\" costs one prefix, a tag one per node)",
			n.Name, len(f.Rules), total, wire.MaxFilterRules, maxNodePrefixes)
	}
	return f, nil
}

// appendRules adds the filter rules that allow src to reach dst by c:
// ports without a protocol mean tcp and udp; sides longer than
// wire.MaxFilterPrefixes are split.
func (c *compiled) appendRules(out []wire.FilterRule, src, dst []netip.Prefix) []wire.FilterRule {
	if len(src) == 0 || len(dst) == 0 {
		return out
	}
	protos := []string{c.proto}
	if c.proto == wire.ProtoAny && len(c.ports) > 0 {
		protos = []string{wire.ProtoTCP, wire.ProtoUDP}
	}
	for _, proto := range protos {
		for s := range slices.Chunk(src, wire.MaxFilterPrefixes) {
			for d := range slices.Chunk(dst, wire.MaxFilterPrefixes) {
				out = append(out, wire.FilterRule{Rule: c.label, Src: s, Dst: d, Proto: proto, Ports: c.ports})
			}
		}
	}
	return out
}

// Version is the policy version the filters carry.
func (r *Resolved) Version() uint64 { return r.version }

// Open reports whether there is no policy: everything is allowed.
func (r *Resolved) Open() bool { return r.open }

// Filter is the named node's filter; it allows nothing for a node the
// policy was not resolved with. Without a policy it allows everything.
// Callers must not modify it.
func (r *Resolved) Filter(name string) *wire.Filter {
	if r.open {
		return &wire.Filter{Version: r.version, AllowAll: true}
	}
	if i, ok := r.index[name]; ok {
		return r.filters[i]
	}
	return &wire.Filter{Version: r.version}
}

// Visible reports whether a and b belong in each other's peer maps: one
// may reach the other, directly or through the other's routes. Without a
// policy every node sees every other.
func (r *Resolved) Visible(a, b string) bool {
	if r.open {
		return true
	}
	ia, okA := r.index[a]
	ib, okB := r.index[b]
	if !okA || !okB {
		return false
	}
	return r.src[ia].meets(r.dst[ib]) || r.src[ib].meets(r.dst[ia])
}

// Membership is the named node's part in the rules, as Visible tests
// it: the rules it is a source of, and those it is a destination of (by
// name or through its routes), a bit each; ok is false for a node the
// policy was not resolved with, or without a policy.
func (r *Resolved) Membership(name string) (src, dst []uint64, ok bool) {
	i, ok := r.index[name]
	if r.open || !ok {
		return nil, nil, false
	}
	return slices.Clone(r.src[i]), slices.Clone(r.dst[i]), true
}

// Verdict is what the policy says of a packet.
type Verdict struct {
	Allow bool
	// Rule is the first rule that allows the packet; "" when it is
	// denied, or allowed because there is no policy.
	Rule string
}

// Test says whether the named node may send to dst on proto (tcp, udp or
// icmp) and port (ignored for icmp), and by which rule. dst is a node's
// overlay address, or an address behind a subnet router or on the
// internet.
func (r *Resolved) Test(src string, dst netip.Addr, proto string, port uint16) Verdict {
	if r.open {
		return Verdict{Allow: true}
	}
	is, ok := r.index[src]
	if !ok {
		return Verdict{}
	}
	dst = dst.Unmap()
	id, isNode := r.byAddr[dst]
	for j, c := range r.rules {
		switch {
		case !r.src[is].has(j):
		case isNode && !r.dstNode[id].has(j):
		case !isNode && !slices.ContainsFunc(c.dstPfx, func(p netip.Prefix) bool { return p.Contains(dst) }):
		case !c.allows(proto, port):
		default:
			return Verdict{Allow: true, Rule: c.label}
		}
	}
	return Verdict{}
}

// allows reports whether the rule's protocol and ports admit a packet.
func (c *compiled) allows(proto string, port uint16) bool {
	if c.proto != wire.ProtoAny && c.proto != proto {
		return false
	}
	if len(c.ports) == 0 {
		return true
	}
	if proto == wire.ProtoICMP {
		return false // ports with proto any mean tcp and udp
	}
	return slices.ContainsFunc(c.ports, func(pr wire.PortRange) bool { return pr.Contains(port) })
}

// Warnings are what a policy check should tell, though the policy is
// valid: entries that name no node yet (a node may join later), unused
// groups, no rules.
func (p *Policy) Warnings(nodes []Node) []string {
	if p == nil {
		return nil
	}
	out := slices.Clone(p.warnings)
	names, tags := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
		for _, t := range n.Tags {
			tags[t] = true
		}
		if n.Name == Internet {
			out = append(out, (&Error{File: p.file, Msg: fmt.Sprintf("a node is named %q: a policy names it %s%s, since %s alone means the internet", Internet, NodePrefix, Internet, Internet)}).Error())
		}
	}
	warned := map[string]bool{}
	var named [][]selector
	for _, ru := range p.rules {
		named = append(named, ru.from, ru.to)
	}
	named = append(named, p.approvers.selectors())
	for _, sel := range named {
		for _, s := range sel {
			var msg string
			switch {
			case s.kind == kindNode && !names[s.name]:
				msg = fmt.Sprintf("no node is named %q (yet): the rule applies to it once it joins", s.name)
			case s.kind == kindTag && !tags[s.name]:
				msg = fmt.Sprintf("no node holds the tag %q (yet): grant it with 'meshnode nodes tag NAME %s' or a join token's --tag", s.name, s.name)
			default:
				continue
			}
			if !warned[msg] && len(out) < maxErrors {
				warned[msg] = true
				out = append(out, (&Error{File: p.file, Line: s.at.line, Column: s.at.col, Msg: msg}).Error())
			}
		}
	}
	return out
}

// SameFilter reports whether two filters are the same.
func SameFilter(a, b *wire.Filter) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Version == b.Version && a.AllowAll == b.AllowAll && slices.EqualFunc(a.Rules, b.Rules, func(x, y wire.FilterRule) bool {
		return x.Rule == y.Rule && x.Proto == y.Proto && slices.Equal(x.Src, y.Src) && slices.Equal(x.Dst, y.Dst) && slices.Equal(x.Ports, y.Ports)
	})
}

// hosts is addrs as single-address prefixes (/32, /128).
func hosts(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// bitset holds one bit per rule.
type bitset []uint64

func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

// meets reports whether b and o share a bit.
func (b bitset) meets(o bitset) bool {
	for i := range b {
		if b[i]&o[i] != 0 {
			return true
		}
	}
	return false
}
