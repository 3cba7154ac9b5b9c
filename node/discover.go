package node

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/portmap"
)

// Discovery timing.
const (
	// stunEvery re-STUNs every 20-25 s: a changed mapping is noticed
	// before a 30 s NAT timeout would bite, and the jitter keeps a fleet
	// from probing in step (Tailscale: 20-26 s).
	stunEvery  = 20 * time.Second
	stunJitter = 5 * time.Second
	// linkPoll compares the host's addresses this often: a portable way to
	// notice a link change (a new address, a moved laptop) within seconds.
	linkPoll = 2 * time.Second
	// gatherTimeout bounds one gathering, STUN retransmissions included.
	gatherTimeout = 10 * time.Second
)

// Kick asks for a gathering now (a path died, a link changed).
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// discoveryLoop gathers candidates at start, every stunEvery, on a link
// change and on a kick, and reports changes to the coordinator at once.
func (e *Engine) discoveryLoop(ctx context.Context) {
	g := &discovery.Gatherer{Prober: e.prober, LocalAddrs: e.opts.LocalAddrs, Exclude: e.state.routes()}
	links := e.localAddrs()
	next := time.NewTimer(0)
	defer next.Stop()
	poll := time.NewTicker(linkPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			now := e.localAddrs()
			if slices.Equal(now, links) {
				continue
			}
			e.log.Info("link change: local addresses changed", "before", links, "after", now)
			links = now
		case <-e.kick:
		case <-next.C:
		}
		e.gather(ctx, g)
		next.Reset(stunEvery + rand.N(stunJitter))
	}
}

// gather runs one gathering and reports what changed.
func (e *Engine) gather(ctx context.Context, g *discovery.Gatherer) {
	gctx, cancel := context.WithTimeout(ctx, gatherTimeout)
	defer cancel()
	servers := e.stunAddrs(gctx)
	res := g.Gather(gctx, servers, e.bind.Port())
	if ctx.Err() != nil {
		return
	}
	e.mu.Lock()
	if pm := e.portMapped; pm.IsValid() {
		res.Endpoints = append(res.Endpoints, wire.Endpoint{Addr: pm, Kind: wire.EndpointPortMap})
	}
	e.mu.Unlock()
	if res.STUNErr != nil && len(servers) > 0 {
		e.log.Warn("STUN failed: no public address learned (UDP blocked?)", "err", res.STUNErr)
	}
	e.mu.Lock()
	old := e.disc
	e.disc = res
	e.mu.Unlock()
	if discovery.SameEndpoints(old.Endpoints, res.Endpoints) {
		return
	}
	if res.Mapping.Behaviour != "" {
		e.mgr.SetSelfNAT(res.Mapping.NATInfo())
	}
	e.log.Info("candidates changed", "endpoints", res.Endpoints, "mapping", res.Mapping.Behaviour, "port_allocation", res.Mapping.PortAlloc)
	e.sendEndpoints()
	if old.Endpoints != nil {
		// Our mapping or our links moved: peers' paths to us are stale.
		e.mgr.Repunch()
	}
}

// sendEndpoints reports the current candidates to the coordinator.
func (e *Engine) sendEndpoints() {
	e.mu.Lock()
	res := e.disc
	e.mu.Unlock()
	if e.stream == nil || res.Endpoints == nil {
		return
	}
	msg := wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: res.Endpoints, Relay: e.cfg.RelayPublic}
	if res.Mapping.Behaviour != "" {
		nat := res.Mapping.NATInfo()
		msg.NAT = &nat
	}
	if err := e.stream.Send(context.Background(), msg); err != nil {
		e.log.Debug("endpoints not sent; they go with the next welcome", "err", err)
	}
}

// stunAddrs resolves the STUN servers: the coordinator's, then configured ones.
func (e *Engine) stunAddrs(ctx context.Context) []netip.AddrPort {
	e.mu.Lock()
	names := append(slices.Clone(e.stunServers), e.cfg.STUNServers...)
	e.mu.Unlock()
	var out []netip.AddrPort
	for _, s := range names {
		ap, err := discovery.ResolveSTUN(ctx, s)
		if err != nil {
			e.log.Warn("STUN server does not resolve", "server", s, "err", err)
			continue
		}
		out = append(out, ap)
	}
	return out
}

func (e *Engine) localAddrs() []netip.Addr {
	var a []netip.Addr
	if e.opts.LocalAddrs != nil {
		a = e.opts.LocalAddrs()
	} else {
		a = discovery.InterfaceAddrs()
	}
	a = slices.Clone(a)
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return a
}

// HandleSTUN implements bind.Handler.
func (e *Engine) HandleSTUN(pkt []byte, from netip.AddrPort) { e.prober.HandleSTUN(pkt, from) }

// HandleRelayedDisco implements bind.Handler.
func (e *Engine) HandleRelayedDisco(pkt []byte, peer crypto.PublicKey) {
	e.mgr.HandleRelayedDisco(pkt, peer)
}

// HandleDisco implements bind.Handler.
func (e *Engine) HandleDisco(pkt []byte, from netip.AddrPort, sock int) {
	e.mgr.HandleDisco(pkt, from, sock)
}

// HandleRelayControl implements bind.Handler.
func (e *Engine) HandleRelayControl(pkt []byte, from netip.AddrPort) {
	e.relay.HandleControl(pkt, from)
}

// keepPortMapping asks the LAN gateway to forward our port (NAT-PMP or PCP)
// and offers the mapping as a candidate while it lasts.
func (e *Engine) keepPortMapping(ctx context.Context) {
	gw, err := portmap.DefaultGateway(ctx)
	if err != nil {
		e.log.Debug("no gateway for port mapping", "err", err)
		return
	}
	m := &portmap.Mapper{Gateway: gw, Log: e.log.With("component", "portmap")}
	err = m.Run(ctx, e.bind.Port(), func(ext netip.AddrPort) {
		e.mu.Lock()
		e.portMapped = ext
		e.mu.Unlock()
		if ext.IsValid() {
			e.log.Info("gateway maps a port for us", "gateway", gw, "external", ext)
		}
		e.Kick()
	})
	if err != nil {
		e.log.Debug("port mapping", "err", err)
	}
}
