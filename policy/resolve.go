package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

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
// filter, who sees whom, and verdicts. It is immutable: Update returns a
// new one that shares what a change leaves alone.
type Resolved struct {
	version uint64
	open    bool // no policy: everything is allowed
	file    string
	pools   []netip.Prefix
	// nodes holds each node's entry by name; names are unique among a
	// mesh's active nodes (the store gives them).
	nodes map[string]*entry
	rules []compiled
	// byAddr finds a node by overlay address, for Test; built on first
	// use, since only 'meshnode policy test' asks.
	addrOnce sync.Once
	byAddr   map[netip.Addr]*entry
}

// entry is one node's part in the policy. Its bitsets are never changed
// once made, so entries of successive Resolveds share them.
type entry struct {
	Node
	// The rules it is a source of, a destination of by name (tag, "*"),
	// and a destination of by name or through its routes.
	src, dstNode, dst bitset
	filter            *wire.Filter
}

// compiled is a rule with its entries resolved to addresses.
type compiled struct {
	*rule
	// srcAll and dstAll say that a side is "*": every node is on it, and
	// its addresses are the pools.
	srcAll, dstAll bool
	// srcNames and dstNames are the nodes on each side (dst: by name or
	// through routes), sorted; nil for a side that is "*". A change to
	// a node finds through them whose filters it changes.
	srcNames, dstNames []string
	srcAddrs           []netip.Prefix // the sources' addresses (the pools for "*")
	dstPfx             []netip.Prefix // destination prefixes: subnets, the internet
	dstSide            []netip.Prefix // every destination address: nodes' and dstPfx
}

// Resolve applies p (nil: no policy) at version to nodes. The Resolved
// is always usable; the error lists what it could not apply, each part
// failing closed: a destination prefix that overlaps the overlay grants
// nothing, and a node whose filter would exceed the bounds gets one that
// allows nothing. A new policy with errors should be refused; a node
// joining a mesh whose policy then fails for it is logged.
func Resolve(p *Policy, version uint64, nodes []Node, net Network) (*Resolved, error) {
	r := &Resolved{version: version, open: p == nil, pools: net.pools(), nodes: make(map[string]*entry, len(nodes))}
	if r.open {
		return r, nil
	}
	r.file = p.file
	var errs []error
	for i := range p.rules {
		c, err := p.compileTargets(&p.rules[i], net)
		errs = append(errs, err...)
		c.srcAll, c.dstAll = hasAll(c.from), hasAll(c.to)
		r.rules = append(r.rules, c)
	}
	for _, n := range nodes {
		r.nodes[n.Name] = r.member(n)
	}
	names := slices.Sorted(maps.Keys(r.nodes))
	for j := range r.rules {
		c := &r.rules[j]
		for _, name := range names {
			e := r.nodes[name]
			if !c.srcAll && e.src.has(j) {
				c.srcNames = append(c.srcNames, name)
			}
			if !c.dstAll && e.dst.has(j) {
				c.dstNames = append(c.dstNames, name)
			}
		}
		r.sideAddrs(j)
	}
	return r, errors.Join(append(errs, r.compileFilters(names)...)...)
}

// Update is r after the node named was (""; none) left and now (nil:
// none) joined in its place: a changed node is both. It is what Resolve
// gives for the nodes so changed, at the cost of what the change touches:
// the sides of the rules either version of the node is on, and the
// filters of the nodes on the other sides of those whose addresses
// changed (nodes that see it, before or after); the rest is shared with
// r. The error is as Resolve's, for the filters it compiled.
func (r *Resolved) Update(was string, now *Node) (*Resolved, error) {
	if r.open {
		// No policy: nothing depends on the nodes.
		return r, nil
	}
	n := &Resolved{version: r.version, file: r.file, pools: r.pools, nodes: maps.Clone(r.nodes), rules: slices.Clone(r.rules)}
	old := r.nodes[was]
	if old != nil {
		delete(n.nodes, was)
	}
	var e *entry
	stale := map[string]bool{}
	if now != nil {
		e = n.member(*now)
		n.nodes[now.Name] = e
		stale[now.Name] = true
	}
	in := func(x *entry, bits func(*entry) bitset, j int) bool { return x != nil && bits(x).has(j) }
	src := func(x *entry) bitset { return x.src }
	dstNode := func(x *entry) bitset { return x.dstNode }
	dst := func(x *entry) bitset { return x.dst }
	sameAddrs := old != nil && e != nil && slices.Equal(old.Addrs, e.Addrs)
	for j := range n.rules {
		c := &n.rules[j]
		wasSrc, isSrc := in(old, src, j), in(e, src, j)
		if !c.srcAll && (wasSrc || isSrc) {
			c.srcNames = replaceName(c.srcNames, wasSrc, was, isSrc, e)
		}
		if !c.dstAll && (in(old, dst, j) || in(e, dst, j)) {
			c.dstNames = replaceName(c.dstNames, in(old, dst, j), was, in(e, dst, j), e)
		}
		wasDst, isDst := in(old, dstNode, j), in(e, dstNode, j)
		srcMoved := !c.srcAll && (wasSrc || isSrc) && !(wasSrc && isSrc && sameAddrs)
		dstMoved := !c.dstAll && (wasDst || isDst) && !(wasDst && isDst && sameAddrs)
		if !srcMoved && !dstMoved {
			continue
		}
		n.sideAddrs(j)
		// The rule's sources' filters hold its destinations' addresses,
		// and its destinations' its sources'.
		if srcMoved {
			n.markSide(stale, c.dstAll, c.dstNames)
		}
		if dstMoved {
			n.markSide(stale, c.srcAll, c.srcNames)
		}
	}
	return n, errors.Join(n.compileFilters(slices.Sorted(maps.Keys(stale)))...)
}

// replaceName is names without was (if it was on the side) and with
// now's name (if it is), sorted. names is shared with older Resolveds
// and never changed.
func replaceName(names []string, wasIn bool, was string, isIn bool, now *entry) []string {
	out := make([]string, 0, len(names)+1)
	for _, s := range names {
		if !wasIn || s != was {
			out = append(out, s)
		}
	}
	if isIn {
		if i, found := slices.BinarySearch(out, now.Name); !found {
			out = slices.Insert(out, i, now.Name)
		}
	}
	return out
}

// markSide adds the nodes on a rule's side to stale: every node when it
// is "*".
func (r *Resolved) markSide(stale map[string]bool, all bool, names []string) {
	if all {
		for name := range r.nodes {
			stale[name] = true
		}
		return
	}
	for _, name := range names {
		stale[name] = true
	}
}

// member is n's entry, without its filter: the rules it is on.
func (r *Resolved) member(n Node) *entry {
	words := (len(r.rules) + 63) / 64
	e := &entry{Node: n, src: make(bitset, words), dstNode: make(bitset, words), dst: make(bitset, words)}
	for j, c := range r.rules {
		if matches(c.from, n) {
			e.src.set(j)
		}
		if matches(c.to, n) {
			e.dstNode.set(j)
			e.dst.set(j)
		} else if len(routed(c.dstPfx, n.Routes)) > 0 {
			e.dst.set(j)
		}
	}
	return e
}

// sideAddrs sets rule j's addresses from the nodes on its sides.
func (r *Resolved) sideAddrs(j int) {
	c := &r.rules[j]
	c.srcAddrs = r.addrsOf(c.srcAll, c.srcNames, nil)
	c.dstSide = sortPrefixes(append(r.addrsOf(c.dstAll, c.dstNames, func(e *entry) bool { return e.dstNode.has(j) }), c.dstPfx...))
}

// compileFilters compiles the named nodes' filters into new entries,
// and returns what failed.
func (r *Resolved) compileFilters(names []string) []error {
	var errs []error
	failed := 0
	for _, name := range names {
		e, ok := r.nodes[name]
		if !ok {
			continue
		}
		f, err := r.compileFilter(e)
		if err != nil {
			if failed++; failed <= maxErrors {
				errs = append(errs, &Error{File: r.file, Msg: err.Error()})
			}
		}
		next := *e
		next.filter = f
		r.nodes[name] = &next
	}
	if failed > maxErrors {
		errs = append(errs, &Error{File: r.file, Msg: fmt.Sprintf("and %d more nodes whose filters would exceed the bounds", failed-maxErrors)})
	}
	return errs
}

func hasAll(sels []selector) bool {
	return slices.ContainsFunc(sels, func(s selector) bool { return s.kind == kindAll })
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

// addrsOf is the addresses of the named nodes (those for which keep
// holds, if set); the pools when the side is "*".
func (r *Resolved) addrsOf(all bool, names []string, keep func(*entry) bool) []netip.Prefix {
	if all {
		return slices.Clone(r.pools)
	}
	var out []netip.Prefix
	for _, name := range names {
		if e := r.nodes[name]; keep == nil || keep(e) {
			out = append(out, hosts(e.Addrs)...)
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
func (r *Resolved) compileFilter(n *entry) (*wire.Filter, error) {
	own := hosts(n.Addrs)
	f := &wire.Filter{Version: r.version}
	for j := range r.rules {
		c := &r.rules[j]
		if n.src.has(j) {
			f.Rules = c.appendRules(f.Rules, own, c.dstSide)
		}
		if n.dst.has(j) {
			var dst []netip.Prefix
			if n.dstNode.has(j) {
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
	if e, ok := r.nodes[name]; ok {
		return e.filter
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
	ea, okA := r.nodes[a]
	eb, okB := r.nodes[b]
	if !okA || !okB {
		return false
	}
	return ea.src.meets(eb.dst) || eb.src.meets(ea.dst)
}

// Membership is the named node's part in the rules, as Visible tests
// it: the rules it is a source of, and those it is a destination of (by
// name or through its routes), a bit each; ok is false for a node the
// policy was not resolved with, or without a policy.
func (r *Resolved) Membership(name string) (src, dst []uint64, ok bool) {
	e, ok := r.nodes[name]
	if r.open || !ok {
		return nil, nil, false
	}
	return slices.Clone(e.src), slices.Clone(e.dst), true
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
	from, ok := r.nodes[src]
	if !ok {
		return Verdict{}
	}
	dst = dst.Unmap()
	to, isNode := r.addrIndex()[dst]
	for j, c := range r.rules {
		switch {
		case !from.src.has(j):
		case isNode && !to.dstNode.has(j):
		case !isNode && !slices.ContainsFunc(c.dstPfx, func(p netip.Prefix) bool { return p.Contains(dst) }):
		case !c.allows(proto, port):
		default:
			return Verdict{Allow: true, Rule: c.label}
		}
	}
	return Verdict{}
}

// addrIndex is byAddr, built on first use.
func (r *Resolved) addrIndex() map[netip.Addr]*entry {
	r.addrOnce.Do(func() {
		r.byAddr = make(map[netip.Addr]*entry, 2*len(r.nodes))
		for _, e := range r.nodes {
			for _, a := range e.Addrs {
				r.byAddr[a.Unmap()] = e
			}
		}
	})
	return r.byAddr
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
