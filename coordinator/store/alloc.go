package store

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Pool is the pair of overlay prefixes a node's addresses come from. A node
// gets one host index and the address with that index in each prefix, so its
// IPv4 and IPv6 addresses correspond (100.88.0.7 and fd6d:6573:686e::7).
type Pool struct {
	V4 netip.Prefix
	V6 netip.Prefix
}

// String names the pool in errors.
func (p Pool) String() string { return p.V4.String() + " and " + p.V6.String() }

// size is the number of IPv4 addresses in the pool, network and broadcast
// included.
func (p Pool) size() uint64 { return uint64(1) << (32 - p.V4.Bits()) }

// Usable reports whether host index i may be given to a node: not the
// network address (0) nor the broadcast address (the last), and, in a pool
// larger than a /24, no address ending in .0 or .255, which classful software
// still mistakes for a network or broadcast address.
func (p Pool) Usable(i uint64) bool {
	if i == 0 || i >= p.size()-1 {
		return false
	}
	if p.V4.Bits() < 24 {
		last := p.addr4(i).As4()[3]
		return last != 0 && last != 255
	}
	return true
}

func (p Pool) addr4(i uint64) netip.Addr {
	b := p.V4.Masked().Addr().As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(i))
	return netip.AddrFrom4(b)
}

func (p Pool) addr6(i uint64) netip.Addr {
	// The IPv6 prefix is at most a /64 (config.Validate), so the index fits
	// the low 64 bits, which are zero in the masked prefix.
	b := p.V6.Masked().Addr().As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+i)
	return netip.AddrFrom16(b)
}

// Addrs returns the addresses of host index i.
func (p Pool) Addrs(i uint64) (v4, v6 netip.Addr) { return p.addr4(i), p.addr6(i) }

// usableThrough is the number of usable host indexes from 1 to m.
func (p Pool) usableThrough(m uint64) uint64 {
	if p.size() < 3 {
		return 0
	}
	m = min(m, p.size()-2)
	if p.V4.Bits() >= 24 {
		return m
	}
	// The pool starts at a multiple of 256 (a prefix shorter than /24), so
	// an index ends in .0 when it is a multiple of 256, in .255 one before.
	return m - m/256 - (m+1)/256
}

// AfterDense is LowestFree without the list, for the usual case: when
// count indexes are used, the highest being highest, and those are all
// the usable ones from 1 to highest (no node left a gap), the lowest free
// one is the next usable after highest. ok is false otherwise, or when none is left: the
// caller then reads them all for LowestFree. Lowest-first allocation keeps
// the used indexes dense, so a registration costs one aggregate instead
// of reading every node's index.
func (p Pool) AfterDense(count, highest uint64) (uint64, bool) {
	if count != p.usableThrough(highest) {
		return 0, false
	}
	for i := highest + 1; i < p.size()-1; i++ {
		if p.Usable(i) {
			return i, true
		}
	}
	return 0, false
}

// LowestFree returns the lowest usable host index not in used, which must be
// sorted ascending. Lowest-first keeps addresses compact and predictable.
func (p Pool) LowestFree(used []uint64) (uint64, error) {
	j := 0
	for i := uint64(1); i < p.size()-1; i++ {
		if !p.Usable(i) {
			continue
		}
		for j < len(used) && used[j] < i {
			j++
		}
		if j < len(used) && used[j] == i {
			continue
		}
		return i, nil
	}
	return 0, fmt.Errorf("%w: pool %v has no free address (%d nodes registered); remove nodes with 'meshnode nodes remove' or configure a larger --network", ErrPoolExhausted, p.V4, len(used))
}

// maxLabel is the longest DNS label (RFC 1035 §2.3.4).
const maxLabel = 63

// Suffixed returns the nth candidate name for base: base itself for n ≤ 1,
// then base-2, base-3…, with base shortened so the result stays a DNS label.
func Suffixed(base string, n int) string {
	if n <= 1 {
		return base
	}
	suffix := "-" + strconv.Itoa(n)
	if len(base)+len(suffix) > maxLabel {
		base = strings.TrimRight(base[:maxLabel-len(suffix)], "-")
	}
	return base + suffix
}
