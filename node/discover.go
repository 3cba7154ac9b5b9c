package node

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/meshnode/meshnode/internal/version"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/portmap"
)

// Discovery timing.
const (
	// stunEvery re-checks the mapping every 55-65 s with one signed
	// Binding request to the primary STUN server (the full RFC 5780 test
	// runs at start, on a link change or a kick, and when the mapping
	// moved); the jitter keeps a fleet from probing in step. An idle node
	// sends the coordinator one packet a minute for it; a moved mapping of
	// a busy path is noticed sooner, by its heartbeats (6 s).
	stunEvery  = 55 * time.Second
	stunJitter = 10 * time.Second
	// lifetimeMargin keeps idle keepalives inside the mapping lifetime
	// the probe measured: 80% of the silence a mapping survived.
	lifetimeMargin = 0.8
	// linkPoll compares the host's addresses this often: a portable way to
	// notice a link change (a new address, a moved laptop) within seconds.
	linkPoll = 2 * time.Second
	// gatherTimeout bounds one gathering, STUN retransmissions included.
	gatherTimeout = 10 * time.Second
)

// discoverer owns this node's candidates: it gathers them (STUN from the
// shared socket, local addresses, the gateway's port mapping) at start,
// periodically, on a link change and on a kick, and reports changes to the
// coordinator and the path manager.
type discoverer struct {
	prober     *discovery.Prober
	port       func() uint16
	mgr        *path.Manager
	send       func(wire.StreamMsg) // to the coordinator; never blocks
	localAddrs func() []netip.Addr  // nil: the host's
	exclude    []netip.Prefix       // the overlay's own networks
	configured []string             // STUN servers from the config
	// auth signs requests to the coordinator's STUN servers, so the
	// coordinator sees first hand where this node is (wire.STUNAuthLabel);
	// nil when the key pair can't make a password.
	auth *discovery.Credentials
	// relayRefresh hears the keepalive interval the measured mapping
	// lifetime allows, for the relay binding; nil: none.
	relayRefresh func(time.Duration)
	relay        string         // relay_public, announced with the candidates
	routes       []netip.Prefix // the routes this node advertises, announced with them too
	// listen opens a fresh UDP socket for the NAT filtering test; nil:
	// filtering is not measured.
	listen func() (discovery.UDPConn, error)
	// links hears this host's interface prefixes on every link poll.
	links    func([]netip.Prefix)
	saveSTUN func(servers, servers6 []string) error
	scope    *scope // refreshed with the host's prefixes on every link poll
	log      *slog.Logger
	kick     chan struct{}

	mu sync.Mutex
	// stun is the coordinator's STUN servers (host:port), primary first;
	// stun6 its IPv6 ones (stun_listen_v6).
	stun  []string
	stun6 []string
	res   discovery.Result
	// portMapped is the gateway's port mapping for our socket, if any.
	portMapped netip.AddrPort
	// lifetime is the longest silence the mapping was measured to
	// outlive; 0 until measured.
	lifetime time.Duration
	// filtering is what the NAT filtering test found on this network;
	// empty until measured.
	filtering wire.NATFiltering
	// base is run's context, which the lifetime measurements that apply
	// starts end with; set before run gathers.
	base context.Context
	// stopLearning ends the running lifetime measurement.
	stopLearning context.CancelFunc
	// learning waits for lifetime measurements when run ends.
	learning sync.WaitGroup
}

// Kick asks for a gathering now (a path died, a link changed).
func (d *discoverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// setSTUN records the coordinator's STUN servers from its welcome, IPv4
// and IPv6, and keeps them in the state file for the next start and for
// netcheck.
func (d *discoverer) setSTUN(servers, servers6 []string) {
	if len(servers) == 0 && len(servers6) == 0 {
		return
	}
	d.mu.Lock()
	changed := !slices.Equal(servers, d.stun) || !slices.Equal(servers6, d.stun6)
	d.stun, d.stun6 = slices.Clone(servers), slices.Clone(servers6)
	d.mu.Unlock()
	if changed {
		if err := d.saveSTUN(servers, servers6); err != nil {
			d.log.Warn("saving the coordinator's STUN servers", "err", err)
		}
	}
}

// natFiltering is what the filtering test found on this network; empty
// until measured.
func (d *discoverer) natFiltering() wire.NATFiltering {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.filtering
}

// mappingLifetime is what the last measurement found; 0 when none.
func (d *discoverer) mappingLifetime() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lifetime
}

// result is the last gathering.
func (d *discoverer) result() discovery.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.res
}

// run gathers candidates until ctx ends.
func (d *discoverer) run(ctx context.Context) {
	d.base = ctx
	defer d.learning.Wait()
	g := &discovery.Gatherer{Prober: d.prober, LocalAddrs: d.localAddrs, Exclude: d.exclude}
	links := d.hostAddrs()
	next := time.NewTimer(0)
	defer next.Stop()
	poll := time.NewTicker(linkPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			now := d.hostAddrs()
			if slices.Equal(now, links) {
				continue
			}
			d.log.Info("link change: local addresses changed", "before", links, "after", now)
			links = now
		case <-d.kick:
		case <-next.C:
			if d.recheck(ctx) {
				next.Reset(stunEvery + rand.N(stunJitter))
				continue
			}
		}
		d.gather(ctx, g)
		next.Reset(stunEvery + rand.N(stunJitter))
	}
}

// recheck asks the server that answered the last gathering where this
// node's mapping is now; it reports whether that is still where it was
// (no full gathering needed).
func (d *discoverer) recheck(ctx context.Context) bool {
	last := d.result()
	if !last.Mapping.Server.Addr.IsValid() || !last.Mapping.Public.IsValid() {
		return false
	}
	qctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	r, err := d.prober.Query(qctx, last.Mapping.Server, 0)
	return err == nil && r.Mapped == last.Mapping.Public
}

// learnLifetime measures this node's NAT mapping lifetime against the
// server that answered res (its alternate sockets), and spaces idle
// keepalives inside it. It ends early when ctx does (a newer gathering).
func (d *discoverer) learnLifetime(ctx context.Context, res discovery.Result) {
	alts := discovery.Alternates(res.Mapping.Server, res.Mapping.Other)
	if len(alts) == 0 || res.Mapping.Server.Auth == nil || res.Mapping.Behaviour == wire.MappingNone {
		return
	}
	survived, err := d.prober.LearnLifetime(ctx, alts)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		d.log.Info("NAT mapping lifetime not measured; idle keepalives stay at the default", "err", err)
		return
	}
	d.mu.Lock()
	d.lifetime = survived
	d.mu.Unlock()
	keep := time.Duration(float64(survived) * lifetimeMargin)
	set := d.mgr.SetIdleKeepalive(keep)
	if d.relayRefresh != nil {
		d.relayRefresh(keep)
	}
	d.log.Info("NAT mapping lifetime measured", "outlived", survived, "idle_keepalive", set)
}

// gather runs one gathering and reports what changed: once when the
// first address family's STUN is in, if the other is slow, and again at
// the end.
func (d *discoverer) gather(ctx context.Context, g *discovery.Gatherer) {
	gctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	servers := d.stunAddrs(gctx)
	res := g.Gather(gctx, servers, d.port(), d.result(), d.apply)
	if ctx.Err() != nil {
		return
	}
	if res.STUNErr != nil && len(servers.V4)+len(servers.V6) > 0 {
		d.log.Warn("STUN failed: no public address learned (UDP blocked?)", "err", res.STUNErr)
	}
	d.apply(res)
}

// apply takes a gathering's result and reports it if the candidates
// changed.
func (d *discoverer) apply(res discovery.Result) {
	d.mu.Lock()
	if pm := d.portMapped; pm.IsValid() {
		res.Endpoints = append(res.Endpoints, wire.Endpoint{Addr: pm, Kind: wire.EndpointPortMap})
	}
	old := d.res
	d.res = res
	d.mu.Unlock()
	// Without a NAT, STUN finds an address already among the
	// candidates: what it learns is the mapping behaviour alone.
	eps := !discovery.SameEndpoints(old.Endpoints, res.Endpoints)
	moved := res.Mapping.Public != old.Mapping.Public
	if !eps && !moved && res.Mapping.NATInfo() == old.Mapping.NATInfo() {
		return
	}
	if res.Mapping.Behaviour != "" {
		d.mgr.SetSelfNAT(res.Mapping.NATInfo())
	}
	d.log.Info("candidates changed", "endpoints", res.Endpoints, "mapping", res.Mapping.Behaviour, "port_allocation", res.Mapping.PortAlloc, "mapping_v6", res.Mapping6.Behaviour)
	d.sendEndpoints()
	if eps && old.Endpoints != nil {
		// Our mapping or our links moved: peers' paths to us are stale.
		d.mgr.Repunch()
	}
	if moved {
		d.relearn(d.base, res)
	}
}

// relearn starts measuring the mapping lifetime of a new network, ending
// a measurement of the old one. Until it is measured, keepalives go at the
// default: the new NAT may forget sooner than the old.
func (d *discoverer) relearn(ctx context.Context, res discovery.Result) {
	lctx, cancel := context.WithCancel(ctx)
	d.mu.Lock()
	if d.stopLearning != nil {
		d.stopLearning()
	}
	d.stopLearning, d.lifetime, d.filtering = cancel, 0, ""
	d.mu.Unlock()
	d.mgr.SetIdleKeepalive(0)
	if d.relayRefresh != nil {
		d.relayRefresh(0)
	}
	d.learning.Go(func() { d.learnLifetime(lctx, res) })
	d.learning.Go(func() { d.learnFiltering(lctx, res) })
}

// learnFiltering measures the NAT's filtering (RFC 5780 §4.4), for the
// administrator's node table, once per network: from a socket of its own,
// since the shared one has opened the NAT's filter towards the server's
// other address. It reports the result with the candidates.
func (d *discoverer) learnFiltering(ctx context.Context, res discovery.Result) {
	m := res.Mapping
	if d.listen == nil || !m.Server.Addr.IsValid() || !m.Other.IsValid() {
		return
	}
	c, err := d.listen()
	if err != nil {
		d.log.Info("NAT filtering not measured", "err", err)
		return
	}
	f, err := discovery.MeasureFiltering(ctx, c, m.Server.Addr, m.Other, m.Behaviour == wire.MappingNone)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		d.log.Info("NAT filtering not measured", "err", err)
		return
	}
	d.mu.Lock()
	d.filtering = f
	d.mu.Unlock()
	d.log.Info("NAT filtering measured", "filtering", f)
	d.sendEndpoints()
}

// software is what this node runs, reported with its endpoints for the
// administrator's node table.
var software = wire.Software{Version: version.Version, OS: runtime.GOOS + "/" + runtime.GOARCH}

// sendEndpoints reports the current candidates to the coordinator.
func (d *discoverer) sendEndpoints() {
	d.mu.Lock()
	res, filtering := d.res, d.filtering
	d.mu.Unlock()
	if res.Endpoints == nil {
		return
	}
	msg := wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: res.Endpoints, Relay: d.relay, Routes: d.routes, Software: &software}
	if res.Mapping.Behaviour != "" {
		nat := res.Mapping.NATInfo()
		nat.Filtering = filtering
		msg.NAT = &nat
	}
	d.send(msg)
}

// stunAddrs resolves the STUN servers of each family: the coordinator's,
// signed, then configured ones, unsigned (a third party has no use for our
// key). A configured name counts in both families (its A and AAAA
// records); a missing AAAA is no news worth a warning.
func (d *discoverer) stunAddrs(ctx context.Context) discovery.Servers {
	d.mu.Lock()
	coord4, coord6 := slices.Clone(d.stun), slices.Clone(d.stun6)
	d.mu.Unlock()
	var out discovery.Servers
	add := func(name string, v6 bool, auth *discovery.Credentials, quiet bool) {
		ap, err := discovery.ResolveSTUNFamily(ctx, name, v6)
		switch {
		case err == nil && v6:
			out.V6 = append(out.V6, discovery.Target{Addr: ap, Auth: auth})
		case err == nil:
			out.V4 = append(out.V4, discovery.Target{Addr: ap, Auth: auth})
		case quiet:
			d.log.Debug("STUN server has no address of this family", "server", name, "ipv6", v6, "err", err)
		default:
			d.log.Warn("STUN server does not resolve", "server", name, "err", err)
		}
	}
	for _, s := range coord4 {
		add(s, false, d.auth, false)
	}
	for _, s := range coord6 {
		add(s, true, d.auth, false)
	}
	for _, s := range d.configured {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			add(s, ap.Addr().Unmap().Is6(), nil, false)
			continue
		}
		add(s, false, nil, false)
		add(s, true, nil, true)
	}
	return out
}

// hostAddrs are the local addresses, sorted, to notice link changes; the
// scope gets their prefixes.
func (d *discoverer) hostAddrs() []netip.Addr {
	var a []netip.Addr
	if d.localAddrs != nil {
		a = slices.Clone(d.localAddrs())
		d.scope.set(assumedPrefixes(a))
	} else {
		prefixes := discovery.InterfacePrefixes()
		d.scope.set(prefixes)
		if d.links != nil {
			d.links(prefixes)
		}
		for _, p := range prefixes {
			a = append(a, p.Addr())
		}
	}
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return a
}

// keepPortMapping asks the LAN gateway to forward our port (NAT-PMP or PCP)
// and offers the mapping as a candidate while it lasts.
func (d *discoverer) keepPortMapping(ctx context.Context) {
	gw, err := portmap.DefaultGateway(ctx)
	if err != nil {
		d.log.Debug("no gateway for port mapping", "err", err)
		return
	}
	m := &portmap.Mapper{Gateway: gw, Log: d.log.With("component", "portmap")}
	err = m.Run(ctx, d.port(), func(ext netip.AddrPort) {
		d.mu.Lock()
		d.portMapped = ext
		d.mu.Unlock()
		if ext.IsValid() {
			d.log.Info("gateway maps a port for us", "gateway", gw, "external", ext)
		}
		d.Kick()
	})
	if err != nil {
		d.log.Debug("port mapping", "err", err)
	}
}
