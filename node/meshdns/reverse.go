package meshdns

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Reverse-mapping domains: RFC 1035 §3.5 (IPv4, one label per octet) and
// RFC 3596 §2.5 (IPv6, one label per nibble), least significant first.
const (
	reverse4 = "in-addr.arpa."
	reverse6 = "ip6.arpa."
)

// reverseForms are the two reverse-mapping forms: the domain, the bits
// per label and the labels' base.
var reverseForms = []struct {
	suffix    string
	bytes     int
	per, base int
}{
	{reverse4, 4, 8, 10},
	{reverse6, 16, 4, 16},
}

// reverseAddr is the address a canonical reverse name stands for; ok is
// false for any other name, and for a partial one (a zone's name).
func reverseAddr(name string) (netip.Addr, bool) {
	for _, f := range reverseForms {
		rest, ok := strings.CutSuffix(name, "."+f.suffix)
		if !ok {
			continue
		}
		labels := dns.SplitDomainName(rest)
		if len(labels) != f.bytes*8/f.per {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels { // least significant first
			v, err := strconv.ParseUint(l, f.base, f.per)
			if err != nil || l != strconv.FormatUint(v, f.base) {
				return netip.Addr{}, false
			}
			b[f.bytes-1-i*f.per/8] |= byte(v) << (i * f.per % 8)
		}
		if f.bytes == 4 {
			return netip.AddrFrom4([4]byte(b[:4])), true
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// reverseZone is the reverse-mapping domain that holds p: its whole
// octets (IPv4) or nibbles (IPv6), so a prefix not on such a boundary
// gets the larger zone around it. Systems route the zone to the resolver;
// names in it outside p are forwarded.
func reverseZone(p netip.Prefix) string {
	p = p.Masked()
	arpa, err := dns.ReverseAddr(p.Addr().String())
	if err != nil {
		return ""
	}
	f := reverseForms[0]
	if p.Addr().Is6() {
		f = reverseForms[1]
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(arpa, f.suffix))
	keep := labels[len(labels)-p.Bits()/f.per:]
	if len(keep) == 0 {
		return f.suffix
	}
	return strings.Join(keep, ".") + "." + f.suffix
}

// ReverseZones are the reverse-mapping domains of the overlay's prefixes,
// without the final dot: what the OS is told to send to the resolver.
func ReverseZones(overlay []netip.Prefix) []string {
	var out []string
	for _, p := range overlay {
		if z := reverseZone(p); z != "" {
			out = append(out, strings.TrimSuffix(z, "."))
		}
	}
	return out
}
