package filter

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// u128 is an address (IPv4 in lo) or a port as one ordered number.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// succ is a+1, false when a is the largest value.
func (a u128) succ() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

// addrValue is an address as a number: IPv4 in the low 32 bits.
func addrValue(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// span is an inclusive range of u128.
type span struct{ first, last u128 }

// prefixSpan is the range of addresses a masked prefix covers.
func prefixSpan(p netip.Prefix) span {
	first := addrValue(p.Addr())
	host := p.Addr().BitLen() - p.Bits() // host bits, 0 to 128
	var mask u128
	switch {
	case host >= 128:
		mask = u128{^uint64(0), ^uint64(0)}
	case host >= 64:
		mask = u128{^uint64(0) >> (128 - host), ^uint64(0)}
	case host > 0:
		mask = u128{0, ^uint64(0) >> (64 - host)}
	}
	return span{first, u128{first.hi | mask.hi, first.lo | mask.lo}}
}

// spans is a set of values: sorted, disjoint and not adjacent, so that a
// lookup is one binary search.
type spans []span

// newSpans merges in into a set.
func newSpans(in []span) spans {
	if len(in) == 0 {
		return nil
	}
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b span) int { return a.first.cmp(b.first) })
	out := s[:1]
	for _, x := range s[1:] {
		top := &out[len(out)-1]
		next, ok := top.last.succ()
		if !ok || x.first.cmp(next) <= 0 {
			if x.last.cmp(top.last) > 0 {
				top.last = x.last
			}
			continue
		}
		out = append(out, x)
	}
	return slices.Clip(out)
}

// contains reports whether x is in the set.
func (s spans) contains(x u128) bool {
	i := s.search(x)
	return i < len(s) && s[i].first.cmp(x) <= 0
}

// overlaps reports whether some value of sp is in the set.
func (s spans) overlaps(sp span) bool {
	i := s.search(sp.first)
	return i < len(s) && s[i].first.cmp(sp.last) <= 0
}

// search is the index of the first span that does not end before x.
func (s spans) search(x u128) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].last.cmp(x) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
