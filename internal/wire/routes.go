package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// MaxRoutes bounds the routes one node advertises: a site's LANs and
// VLANs, far below what a node message holds (MaxNodeMessage). A node
// refuses a longer list at start; the coordinator ignores one.
const MaxRoutes = 256

// The exit routes: a node that advertises both offers itself as an exit
// node, and peers send their internet traffic through it only when their
// user chooses it.
var (
	ExitRouteV4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	ExitRouteV6 = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
)

// IsExitRoute reports whether p is one of the exit routes.
func IsExitRoute(p netip.Prefix) bool { return p == ExitRouteV4 || p == ExitRouteV6 }

// OffersExit reports whether routes hold an exit route.
func OffersExit(routes []netip.Prefix) bool { return slices.ContainsFunc(routes, IsExitRoute) }

// reserved are the ranges no subnet route may touch: packets there never
// belong to a LAN behind another machine (RFC 1122 §3.2.1.3 loopback,
// RFC 3927 and RFC 4291 link-local, RFC 5771 and RFC 4291 multicast, the
// limited broadcast of RFC 919). A route covering one (0.0.0.0/1) would
// capture them on every peer.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// CheckRoute checks one advertised route: a masked IPv4 or IPv6 prefix
// that touches no reserved range, or an exit route.
func CheckRoute(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("route %s is not a prefix: write it as NETWORK/BITS, e.g. 192.168.10.0/24", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("route %s is IPv4-mapped IPv6: write it as plain IPv4, e.g. %s", p, netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked())
	case p.Addr().Zone() != "":
		return fmt.Errorf("route %s has a zone: routes are global", p)
	case p != p.Masked():
		return fmt.Errorf("route %s has host bits set: use %s", p, p.Masked())
	case IsExitRoute(p):
		return nil
	}
	for _, r := range reserved {
		if p.Overlaps(r) {
			return fmt.Errorf("route %s overlaps %s, which is never routed to a LAN (loopback, link-local, multicast or unspecified)", p, r)
		}
	}
	return nil
}

// CheckRoutes checks a node's advertised routes: at most MaxRoutes, each
// valid (CheckRoute), none repeated, and none but the exit routes
// overlapping the overlay's own networks, whose addresses are the nodes'.
func CheckRoutes(routes []netip.Prefix, overlay []netip.Prefix) error {
	if len(routes) > MaxRoutes {
		return fmt.Errorf("%d routes; at most %d", len(routes), MaxRoutes)
	}
	var errs []error
	for i, p := range routes {
		if err := CheckRoute(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if slices.Contains(routes[:i], p) {
			errs = append(errs, fmt.Errorf("route %s is listed twice", p))
		}
		if IsExitRoute(p) {
			continue
		}
		for _, o := range overlay {
			if p.Overlaps(o) {
				errs = append(errs, fmt.Errorf("route %s overlaps the overlay network %s, whose addresses belong to the mesh's nodes", p, o))
			}
		}
	}
	return errors.Join(errs...)
}

// SortRoutes sorts prefixes IPv4 first, then by address and length, so
// that lists compare equal whatever order they came in.
func SortRoutes(ps []netip.Prefix) {
	slices.SortFunc(ps, ComparePrefix)
}

// ComparePrefix orders prefixes by address, then by length.
func ComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
