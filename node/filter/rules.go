package filter

import (
	"net/netip"

	"github.com/meshnode/meshnode/internal/packet"
	"github.com/meshnode/meshnode/internal/wire"
)

// class is the protocol class a rule applies to.
type class uint8

const (
	classTCP class = iota
	classUDP
	classICMP // ICMP in IPv4, ICMPv6 in IPv6
	classOther
	numClasses
)

func classOf(fam family, proto uint8) class {
	switch {
	case proto == packet.ProtoTCP:
		return classTCP
	case proto == packet.ProtoUDP:
		return classUDP
	case proto == packet.ProtoICMP && fam == v4, proto == packet.ProtoICMPv6 && fam == v6:
		return classICMP
	}
	return classOther
}

// rule is one compiled FilterRule: address sets by family, merged port
// ranges.
type rule struct {
	name     string
	counter  *Counter
	src, dst [numFamilies]spans
	// ports are the TCP and UDP destination ports; nil: all of them.
	ports spans
}

// ruleSet is a compiled filter, read by the packet path through an atomic
// pointer and never changed once published.
type ruleSet struct {
	gen   uint64 // tells rule sets apart: a flow checked against another is checked again
	rules []*rule
	// byClass holds, per family and protocol class, the rules that may
	// allow such a packet (in policy order): a packet is checked only
	// against those.
	byClass [numFamilies][numClasses][]*rule
}

// classesOf is the classes a rule of protocol proto applies to. Ports
// constrain TCP and UDP; ICMP ignores them (wire.FilterRule); other
// protocols have none, so a rule with ports never allows them.
func classesOf(proto string, ports bool) []class {
	switch proto {
	case wire.ProtoTCP:
		return []class{classTCP}
	case wire.ProtoUDP:
		return []class{classUDP}
	case wire.ProtoICMP:
		return []class{classICMP}
	}
	if ports {
		return []class{classTCP, classUDP, classICMP}
	}
	return []class{classTCP, classUDP, classICMP, classOther}
}

// compile turns a validated filter into a rule set; counter gives each
// rule name its counter.
func compile(f *wire.Filter, gen uint64, counter func(name string) *Counter) *ruleSet {
	rs := &ruleSet{gen: gen}
	for _, fr := range f.Rules {
		r := &rule{name: fr.Rule, counter: counter(fr.Rule)}
		var src, dst [numFamilies][]span
		for _, p := range fr.Src {
			src[familyOf(p.Addr())] = append(src[familyOf(p.Addr())], prefixSpan(p))
		}
		for _, p := range fr.Dst {
			dst[familyOf(p.Addr())] = append(dst[familyOf(p.Addr())], prefixSpan(p))
		}
		for fam := range numFamilies {
			r.src[fam], r.dst[fam] = newSpans(src[fam]), newSpans(dst[fam])
		}
		ports := make([]span, 0, len(fr.Ports))
		for _, pr := range fr.Ports {
			ports = append(ports, span{u128{lo: uint64(pr.First)}, u128{lo: uint64(pr.Last)}})
		}
		r.ports = newSpans(ports)
		rs.rules = append(rs.rules, r)
		for fam := range numFamilies {
			if r.src[fam] == nil || r.dst[fam] == nil {
				continue // the rule allows nothing of this family
			}
			for _, c := range classesOf(fr.Proto, r.ports != nil) {
				rs.byClass[fam][c] = append(rs.byClass[fam][c], r)
			}
		}
	}
	return rs
}

// allows reports whether a rule allows the packet whose key is k to open
// a flow: its protocol, destination port, source and destination.
func (rs *ruleSet) allows(k *key) bool {
	c := classOf(k.fam, k.proto)
	port := u128{lo: uint64(k.dport)}
	for _, r := range rs.byClass[k.fam][c] {
		if c <= classUDP && r.ports != nil && !r.ports.contains(port) {
			continue
		}
		if r.dst[k.fam].contains(k.dst) && r.src[k.fam].contains(k.src) {
			return true
		}
	}
	return false
}

// blame is the counter of the rule a denied packet is counted against:
// the first of its protocol whose addresses cover the packet's although
// its ports do not, else the first whose addresses cover them at all, so
// that "web allowed from home to office" counts the SSH it kept out; nil
// when no rule covers the addresses.
func (rs *ruleSet) blame(k *key) *Counter {
	covers := func(r *rule) bool { return r.dst[k.fam].contains(k.dst) && r.src[k.fam].contains(k.src) }
	for _, r := range rs.byClass[k.fam][classOf(k.fam, k.proto)] {
		if covers(r) {
			return r.counter
		}
	}
	for _, r := range rs.rules {
		if covers(r) {
			return r.counter
		}
	}
	return nil
}

// reach reports whether some rule allows any address of from to open a
// flow to some address within to (of the same family), on any protocol
// or port.
func (rs *ruleSet) reach(from []netip.Addr, to []netip.Prefix) bool {
	for _, r := range rs.rules {
		for _, a := range from {
			fa := familyOf(a)
			if !r.src[fa].contains(addrValue(a)) {
				continue
			}
			for _, p := range to {
				if familyOf(p.Addr()) == fa && r.dst[fa].overlaps(prefixSpan(p.Masked())) {
					return true
				}
			}
		}
	}
	return false
}
