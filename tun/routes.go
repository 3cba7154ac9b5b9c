package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// RouteSet is what a node routes beyond its overlay networks: peers'
// subnet routes and, with an exit node, the default routes (Via) through
// the TUN device, and the prefixes that keep the host's own routes
// although Via covers them (Bypass: this host's LANs).
type RouteSet struct {
	Via    []netip.Prefix
	Bypass []netip.Prefix
}

// validate checks every prefix: valid, masked, not IPv4-mapped.
func (rs RouteSet) validate() error {
	var errs []error
	for _, p := range slices.Concat(rs.Via, rs.Bypass) {
		if err := validRoute(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// has reports whether rs routes any prefix of the family of v6.
func (rs RouteSet) has(v6 bool) bool {
	return slices.ContainsFunc(rs.Via, func(p netip.Prefix) bool { return p.Addr().Is6() == v6 })
}

// Equal reports whether two sets hold the same prefixes in the same order.
func (rs RouteSet) Equal(o RouteSet) bool {
	return slices.Equal(rs.Via, o.Via) && slices.Equal(rs.Bypass, o.Bypass)
}
