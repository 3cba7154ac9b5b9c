package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/routes"
	"github.com/meshnode/meshnode/tun"
)

// ErrRoutes means the routes this node is told to advertise can't be
// (they overlap the overlay its coordinator hands out): a setting to fix.
var ErrRoutes = errors.New("advertise_routes")

// newTable is the routing table of this node's settings; changes wake the
// OS routes' keeper.
func (e *Engine) newTable() *routes.Table {
	prefs := routes.Prefs{ExitNode: e.cfg.ExitNode, AllowLAN: e.cfg.ExitNodeAllowLANAccess}
	return routes.NewTable(e.cfg.Routes(), e.state.routes(), prefs, func() {
		if e.osRoutes != nil {
			e.osRoutes.Wake()
		}
	})
}

// startRouting starts the keepers of the OS routes and, for a node that
// advertises routes, of its gateway, on an OS TUN only. Each clears what
// it set up when ctx ends, before the device goes.
func (e *Engine) startRouting(ctx context.Context, wg *sync.WaitGroup) {
	if !e.osTUN {
		return
	}
	log := e.log.With("component", "routes")
	osr := tun.NewRoutes(e.tunName())
	var applied tun.RouteSet
	e.osRoutes = routes.NewKeeper("routes through the mesh", func() error {
		rs := e.table.OSRoutes()
		if rs.Equal(applied) && e.osRoutes.Err() == nil {
			return nil
		}
		if err := osr.Set(rs); err != nil {
			return err
		}
		if !rs.Equal(applied) {
			log.Info("routes through the mesh", "via", rs.Via, "local", rs.Bypass)
		}
		applied = rs
		return nil
	}, osr.Close, log)
	wg.Go(func() { e.osRoutes.Run(ctx) })
	if len(e.cfg.Routes()) == 0 {
		return
	}
	gw := routes.NewGateway(e.tunName(), e.cfg.SNATSubnetRoutes)
	var serving []netip.Prefix
	e.gateway = routes.NewKeeper("forwarding to the served routes", func() error {
		now := e.serving()
		if err := gw.Set(now); err != nil {
			return err
		}
		if !slices.Equal(now, serving) {
			log.Info("serving routes for the mesh", "routes", now, "masquerade", e.cfg.SNATSubnetRoutes)
			serving = now
		}
		return nil
	}, gw.Close, log)
	wg.Go(func() { e.gateway.Run(ctx) })
}

// serving is what this node forwards to: the routes the coordinator says
// it serves, as far as it advertises them.
func (e *Engine) serving() []netip.Prefix {
	own := e.cfg.Routes()
	var out []netip.Prefix
	for _, p := range e.selfRecord().Routes {
		if slices.Contains(own, p) {
			out = append(out, p)
		}
	}
	return out
}

// SetPrefs implements localapi.Backend: a new exit node must be a peer
// that serves the exit routes. WireGuard gives the exit routes to the new
// exit node and takes them from the old one.
func (e *Engine) SetPrefs(req localapi.PrefsRequest) (localapi.Prefs, error) {
	p := e.table.Prefs()
	if req.ExitNode != nil {
		p.ExitNode = *req.ExitNode
	}
	if req.AllowLAN != nil {
		p.AllowLAN = *req.AllowLAN
	}
	if p.ExitNode != "" {
		if err := config.ExitNodeSupported(); err != nil {
			return localapi.Prefs{}, err
		}
		if e.cfg.AdvertiseExitNode {
			return localapi.Prefs{}, fmt.Errorf("this node offers itself as an exit node (advertise_exit_node) and uses none")
		}
	}
	old, err := e.table.SetPrefs(p)
	if err != nil {
		return localapi.Prefs{}, err
	}
	for _, name := range []string{old.ExitNode, p.ExitNode} {
		if err := e.reapplyNamed(name); err != nil {
			e.log.Error("applying the exit node to WireGuard", "peer", name, "err", err)
		}
	}
	e.log.Info("preferences changed", "exit_node", p.ExitNode, "exit_node_allow_lan_access", p.AllowLAN)
	return localapi.Prefs{ExitNode: p.ExitNode, AllowLAN: p.AllowLAN}, nil
}

// reapplyNamed gives the peer named name its allowed IPs afresh.
func (e *Engine) reapplyNamed(name string) error {
	if name == "" {
		return nil
	}
	for _, n := range e.peers.All() {
		if n.Name == name {
			return e.peers.Reapply(n.PublicKey)
		}
	}
	return nil
}

// routesStatus is what the node routes, for status.
func (e *Engine) routesStatus() (localapi.Routes, *localapi.ExitNode) {
	self := e.selfRecord()
	st := localapi.Routes{
		Advertised: nonNil(e.cfg.Routes()),
		Serving:    nonNil(e.serving()),
		Primary:    nonNil(self.PrimaryRoutes),
		Via:        []localapi.PeerRoute{},
	}
	if e.gateway != nil {
		st.GatewayError = errText(e.gateway.Err())
	}
	if e.osRoutes != nil {
		st.OSError = errText(e.osRoutes.Err())
	}
	for _, r := range e.table.Used() {
		pr := localapi.PeerRoute{Prefix: r.Prefix, Peer: r.Peer, State: localapi.RouteRouted}
		switch {
		case r.Own:
			pr.State = localapi.RouteOwn
		case r.Shadow.IsValid():
			pr.State, pr.LAN = localapi.RouteLAN, r.Shadow.String()
		}
		st.Via = append(st.Via, pr)
	}
	x, ok := e.table.Exit()
	if !ok {
		return st, nil
	}
	exit := &localapi.ExitNode{Name: x.Name, AllowLAN: e.table.Prefs().AllowLAN}
	switch {
	case !x.Known:
		exit.State = localapi.ExitUnknown
	case !x.Serves:
		exit.State = localapi.ExitNotApproved
	case !x.Online:
		exit.State = localapi.ExitOffline
	case e.mgr.Path(x.Peer).Path == path.PathNone:
		exit.State = localapi.ExitNoPath
	default:
		exit.State, exit.Reachable = localapi.ExitReachable, true
	}
	return st, exit
}

// peerRoutes is what status shows of a peer's routes: those sent through
// it, and whether it may be chosen as the exit node.
func (e *Engine) peerRoutes(n wire.Node) ([]netip.Prefix, bool) {
	var via []netip.Prefix
	for _, p := range e.table.AllowedIPs(n) {
		if !wire.IsExitRoute(p) {
			via = append(via, p)
		}
	}
	return via, wire.OffersExit(n.Routes)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
