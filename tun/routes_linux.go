package tun

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/underlay"
)

// Linux keeps a node's routes in a table of their own, looked up before
// the main table by every packet but the node's own (underlay.Mark), as
// wg-quick does for a default route: an exit node's default routes then
// stand beside the host's own default route without replacing it, and
// the tunnel's packets never enter the tunnel. A Bypass prefix is a
// "throw" route there: the lookup falls through to the main table.
const (
	// RouteTable is the table, "mn" (0x6d6e).
	RouteTable = 0x6d6e
	// RulePriority places the rule after the local table's (0) and before
	// the main table's (32766), between Tailscale's (5210-5270) and the
	// defaults.
	RulePriority = 5300
)

// Routes keeps a RouteSet in RouteTable through one TUN device.
type Routes struct {
	name string
}

// NewRoutes manages the routes through the device name.
func NewRoutes(name string) *Routes { return &Routes{name: name} }

// Set makes RouteTable hold exactly rs, and the rule that consults it
// exist for each family rs routes: missing routes are added, others (a
// crashed run's too) removed. With nothing to route, table and rules go.
func (r *Routes) Set(rs RouteSet) error {
	if err := rs.validate(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(r.name)
	if err != nil {
		return fmt.Errorf("routes through %s: find device: %w", r.name, err)
	}
	want := make(map[routeKey]*netlink.Route)
	for _, p := range rs.Via {
		rt := route(link, p)
		rt.Table = RouteTable
		want[keyOf(p, unix.RTN_UNICAST)] = rt
	}
	if len(rs.Via) > 0 {
		for _, p := range rs.Bypass {
			want[keyOf(p, unix.RTN_THROW)] = &netlink.Route{Dst: ipNet(p), Table: RouteTable, Type: unix.RTN_THROW, Protocol: unix.RTPROT_STATIC}
		}
	}
	var errs []error
	have, err := tableRoutes()
	if err != nil {
		return err
	}
	for k, rt := range have {
		if want[k] == nil {
			if err := netlink.RouteDel(rt); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("routes through %s: delete %s: %w", r.name, k.dst, err))
			}
		}
	}
	for k, rt := range want {
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("routes through %s: add %s: %w", r.name, k.dst, err))
		}
	}
	for _, v6 := range []bool{false, true} {
		errs = append(errs, setRule(v6, rs.has(v6)))
	}
	return errors.Join(errs...)
}

// Close removes the rules and every route of RouteTable.
func (r *Routes) Close() error {
	var errs []error
	for _, v6 := range []bool{false, true} {
		errs = append(errs, setRule(v6, false))
	}
	have, err := tableRoutes()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for k, rt := range have {
		if err := netlink.RouteDel(rt); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("routes through %s: delete %s: %w", r.name, k.dst, err))
		}
	}
	return errors.Join(errs...)
}

// routeKey tells routes of the table apart: a prefix is routed or thrown.
type routeKey struct {
	dst netip.Prefix
	typ int
}

func keyOf(p netip.Prefix, typ int) routeKey { return routeKey{p, typ} }

// tableRoutes lists RouteTable's routes of both families.
func tableRoutes() (map[routeKey]*netlink.Route, error) {
	out := make(map[routeKey]*netlink.Route)
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := netlink.RouteListFiltered(family, &netlink.Route{Table: RouteTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", RouteTable, err)
		}
		for i := range list {
			rt := &list[i]
			out[keyOf(dstOf(rt, family), rt.Type)] = rt
		}
	}
	return out, nil
}

// dstOf is a listed route's destination; netlink gives a default route
// no Dst.
func dstOf(rt *netlink.Route, family int) netip.Prefix {
	if rt.Dst == nil {
		if family == netlink.FAMILY_V6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(rt.Dst.IP)
	if family == netlink.FAMILY_V4 {
		a = a.Unmap()
	}
	bits, _ := rt.Dst.Mask.Size()
	return netip.PrefixFrom(a, bits)
}

// setRule makes the rule "not fwmark underlay.Mark/Mask lookup RouteTable"
// of one family exist (on) or not.
func setRule(v6, on bool) error {
	rule := netlink.NewRule()
	rule.Family = netlink.FAMILY_V4
	if v6 {
		rule.Family = netlink.FAMILY_V6
	}
	rule.Priority = RulePriority
	rule.Table = RouteTable
	rule.Mark = underlay.Mark
	mask := underlay.Mask
	rule.Mask = &mask
	rule.Invert = true
	list, err := netlink.RuleListFiltered(rule.Family, rule, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
	if err != nil {
		return fmt.Errorf("list rules of table %d: %w", RouteTable, err)
	}
	switch {
	case on && len(list) == 0:
		if err := netlink.RuleAdd(rule); err != nil {
			return fmt.Errorf("add rule %v: %w", rule, err)
		}
	case !on:
		for range list {
			if err := netlink.RuleDel(rule); err != nil && !gone(err) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete rule %v: %w", rule, err)
			}
		}
	}
	return nil
}
