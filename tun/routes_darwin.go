package tun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/meshnode/meshnode/internal/wire"
)

// macOS has one routing table and no socket marks: peers' subnet routes go
// into it through the utun, where a LAN more specific than a route keeps
// its traffic by the longest match (so Bypass needs nothing). An exit
// node's default routes would capture the node's own traffic, so they are
// refused (config.Node.Validate refuses exit_node first).
type Routes struct {
	name      string
	installed []netip.Prefix
}

// NewRoutes manages the routes through the device name.
func NewRoutes(name string) *Routes { return &Routes{name: name} }

// Set makes the routes through the device exactly rs.Via.
func (r *Routes) Set(rs RouteSet) error {
	if err := rs.validate(); err != nil {
		return err
	}
	if slices.ContainsFunc(rs.Via, wire.IsExitRoute) {
		return errors.New("exit nodes are used on Linux only: on macOS their default routes would carry the tunnel itself")
	}
	ctx := context.Background()
	var errs []error
	var kept []netip.Prefix
	for _, p := range r.installed {
		if slices.Contains(rs.Via, p) {
			kept = append(kept, p)
			continue
		}
		if err := run(ctx, msgNotInTable, routePath, routeArgs(r.name, p, "delete")...); err != nil {
			errs = append(errs, fmt.Errorf("routes through %s: delete %s: %w", r.name, p, err))
			kept = append(kept, p)
		}
	}
	for _, p := range rs.Via {
		if slices.Contains(kept, p) {
			continue
		}
		if err := run(ctx, msgExists, routePath, routeArgs(r.name, p, "add")...); err != nil {
			errs = append(errs, fmt.Errorf("routes through %s: add %s: %w", r.name, p, err))
			continue
		}
		kept = append(kept, p)
	}
	r.installed = kept
	return errors.Join(errs...)
}

// Close removes every route Set added.
func (r *Routes) Close() error { return r.Set(RouteSet{}) }
