package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/underlay"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/control"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/filter"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/pmtu"
	"github.com/meshnode/meshnode/node/registry"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/node/tcppunch"
)

// Run brings the node up and keeps it up until ctx ends or `meshnode down`
// asks it to leave; then it removes its device and routes. It returns an
// error only for what retrying can't fix.
func (e *Engine) Run(ctx context.Context) (err error) {
	ctx, e.stop = context.WithCancel(ctx)
	e.runCtx = ctx
	defer func() {
		e.stop()
		e.tasks.Wait()
	}()

	if err := e.openTUN(); err != nil {
		return err
	}
	defer e.closeTUN()
	e.recoverDNS()
	if e.cfg.AcceptDNS {
		e.startDNS()
		defer e.dns.stop()
	}

	e.build()
	e.disc.hostAddrs() // the scope knows this host's prefixes before any peer arrives
	e.guard = pmtu.NewGuard(e.tun, e.mtus)
	// The filter sees what wireguard-go sends and receives; the guard's
	// own ICMP errors go into the TUN below it.
	e.dev = device.NewDevice(filter.NewTUN(e.guard, e.filter, !e.opts.UnfilteredSends), e.bind, wgLogger(e.log))
	defer e.dev.Close()
	consumers := peerConsumers(e.dev, e.bind, e.mtus, e.mgr, e.table)
	if e.dns != nil {
		consumers = append(consumers, registry.Named{Name: "dns", Consumer: dnsPeers{e.dns.table}})
	}
	e.peers = registry.New(e.priv.Public(), e.relayFeed.update, consumers...)
	e.relayFeed.peers = e.peers
	// fwmark marks WireGuard's sockets as the node's own (underlay.Mark),
	// on every rebind too.
	if err := e.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\nfwmark=%d\n", e.priv.Hex(), e.cfg.ListenPort, underlay.Mark)); err != nil {
		return fmt.Errorf("configure WireGuard (listen_port %d in use? set another or 0): %w", e.cfg.ListenPort, err)
	}
	if err := e.dev.Up(); err != nil {
		return fmt.Errorf("start WireGuard on UDP port %d (in use? set listen_port to another or 0): %w", e.cfg.ListenPort, err)
	}

	ln, err := localapi.Listen(e.cfg.Socket, e.cfg.SocketGroup)
	if err != nil {
		return err
	}
	metricsLn, err := e.listenMetrics()
	if err != nil {
		ln.Close()
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}

	var punchPort uint16
	if e.cfg.TCPPunch {
		if l, err := tcppunch.NewListener(ctx, e.bind.Port()); err != nil {
			e.log.Warn("TCP hole punching off: cannot listen on the TCP port", "port", e.bind.Port(), "err", err)
		} else {
			e.tcp = l
			defer l.Close()
			punchPort = l.Port()
		}
	}
	e.stream = &control.Stream{
		Coordinators: e.state.coordinators(),
		Client:       e.streamClients(punchPort),
		Priv:         e.priv,
		CoordKey:     e.state.CoordinatorKey,
		Log:          e.log.With("component", "control"),
	}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	// First: the parts below wake the keepers it makes.
	e.startRouting(ctx, &wg)
	wg.Go(func() { e.mgr.Run(ctx) })
	wg.Go(func() { e.pathEvents(ctx) })
	wg.Go(func() { e.handshakes(ctx) })
	welcomed := make(chan struct{}, 1)
	wg.Go(func() { e.reportPaths(ctx, welcomed) })
	wg.Go(func() { e.disc.run(ctx) })
	wg.Go(func() { e.relays.Run(ctx) })
	if e.cfg.PortMapping {
		wg.Go(func() { e.disc.keepPortMapping(ctx) })
	}
	if e.dns != nil {
		wg.Go(func() { e.dns.run(ctx) })
	}
	if e.cfg.RelayListen != "" {
		if err := e.serveRelay(ctx, &wg); err != nil {
			return err
		}
	}
	if metricsLn != nil {
		if err := serveMetrics(ctx, &wg, metricsLn, e.Metrics(), e.log.With("component", "metrics")); err != nil {
			return err
		}
	}
	fl := &filterLink{e: e}
	link := &coordLink{peers: e.peers, mgr: e.mgr, disc: e.disc, welcomeRelay: e.relayFeed.welcome, meshRelay: e.relayFeed.setMesh, self: e.setSelf, dns: e.setDNS, filter: fl.apply, relayPairs: e.relayFeed.setPairs, coordinators: e.heardCoordinators, welcomed: welcomed, log: e.log, progress: e.progress}
	// Before the control socket serves: status reads what it sets.
	e.startMapCache(ctx, &wg, link)
	wg.Go(func() {
		if err := localapi.Serve(ctx, ln, e, e.log); err != nil {
			e.log.Error("control socket", "err", err)
		}
	})
	wg.Go(func() {
		if err := e.stream.Run(ctx, link); err != nil && ctx.Err() == nil {
			e.forgetMapCache(err)
			errc <- fmt.Errorf("coordinator: %w", err)
			e.stop()
		}
	})
	e.log.Info("meshnode up", "name", e.state.Self.Name, "addresses", e.state.Self.Addresses, "interface", e.tunName(), "port", e.bind.Port())
	if filter.SendsUnfiltered {
		e.log.Warn("test build (tag meshnode_unfiltered_sender): this node sends what its access policy denies; only its peers' filters stop it")
	}
	if e.fromCache.Load() != nil {
		e.progress(fmt.Sprintf("up as %s %v on %s with the cached peer map; waiting for the coordinator", e.state.Self.Name, e.state.Self.Addresses, e.tunName()))
	} else {
		e.progress(fmt.Sprintf("up as %s %v on %s; waiting for the coordinator's peer map", e.state.Self.Name, e.state.Self.Addresses, e.tunName()))
	}
	if e.opts.Ready != nil {
		close(e.opts.Ready)
	}
	// Tell systemd (Type=notify) we are ready; a no-op elsewhere.
	daemon.SdNotify(false, daemon.SdNotifyReady)

	<-ctx.Done()
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	e.log.Info("meshnode going down")
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// build makes the node's parts and wires them; nothing here does I/O.
func (e *Engine) build() {
	timing := path.DefaultTiming(e.cfg.Keepalive)
	if e.opts.Timing != nil {
		timing = *e.opts.Timing
	}
	var relayTiming relayclient.Timing
	if e.opts.RelayTiming != nil {
		relayTiming = *e.opts.RelayTiming
	}
	inner := e.opts.Bind
	// The host's path MTUs matter to the host's own sockets only.
	var kernelMTU func(netip.Addr) (int, error)
	if inner == nil {
		inner = bind.NewStdNet()
		kernelMTU = pmtu.KernelPathMTU
	}
	e.bind = bind.New(inner, e.opts.AuxListen)
	e.handshakeAsks = make(chan crypto.PublicKey, handshakeQueue)
	e.bind.SetKernelPathMTU(kernelMTU)
	e.mgr = path.New(crypto.NewSealer(e.priv), e.bind, timing, e.log.With("component", "path"))
	e.mtus = pmtu.NewTable(e.cfg.MTU)
	e.mgr.EnablePMTU(e.cfg.MTU, e.mtus, kernelMTU)
	if e.cfg.TCPPunch {
		e.mgr.EnableTCPPunch()
	}
	if e.opts.AuxListen != nil {
		e.mgr.SetAux(e.bind)
	}
	sc := &scope{overlay: e.state.routes()}
	e.mgr.SetScope(sc)
	e.table = e.newTable()
	prober := discovery.NewProber(e.bind)
	var auth *discovery.Credentials
	if pass, err := wire.STUNPassword(e.priv, e.state.CoordinatorKey); err != nil {
		e.log.Warn("STUN requests go unsigned: the coordinator won't vouch for this node's public address, so peers reach it through the relay", "err", err)
	} else {
		auth = &discovery.Credentials{Username: e.priv.Public().String(), Password: pass}
	}
	e.disc = &discoverer{
		prober:     prober,
		port:       e.bind.Port,
		mgr:        e.mgr,
		send:       e.sendCoordinator,
		localAddrs: e.opts.LocalAddrs,
		exclude:    e.state.routes(),
		configured: e.cfg.STUNServers,
		auth:       auth,
		relay:      e.cfg.RelayPublic,
		routes:     e.cfg.Routes(),
		listen:     func() (discovery.UDPConn, error) { return e.opts.AuxListen() },
		links:      e.table.SetLocal,
		saveSTUN:   e.saveSTUN,
		scope:      sc,
		log:        e.log,
		kick:       make(chan struct{}, 1),
		stun:       e.state.STUN,
		stun6:      e.state.STUN6,
	}
	e.relays = relayclient.New(relayclient.Options{
		Priv:           e.priv,
		Sockets:        e.bind,
		CoordinatorURL: e.state.CoordinatorURL,
		HTTPClient:     control.NewHTTPClient(e.state.Pin),
		CoordinatorKey: e.state.CoordinatorKey,
		HTTPClientFor:  control.NewHTTPClient,
		Deliver:        e.bind.DeliverFrame,
		OnRoute:        e.mgr.SetRelay,
		OnCheck:        e.mgr.CheckRelay,
		Report:         e.reportRelay,
		Log:            e.log.With("component", "relay"),
		Timing:         relayTiming,
	})
	e.disc.relayRefresh = e.relays.SetRefresh
	e.relayFeed = &relayFeed{relays: e.relays, coordKey: e.state.CoordinatorKey, log: e.log.With("component", "relay")}
	if e.cfg.RelayPublic != "" {
		e.relayFeed.self = relayclient.Candidate{Key: e.priv.Public(), Addr: e.cfg.RelayPublic}
	}
	e.bind.Attach(e.mgr, bind.Handlers{
		STUN:         prober.HandleSTUN,
		Disco:        e.mgr.HandleDisco,
		RelayedDisco: e.mgr.HandleRelayedDisco,
		RelayControl: e.relays.HandleControl,
		Echo:         e.relays.HandleEcho,
		Self:         e.priv.Public(),
		NoSession:    e.askHandshake,
		Stray:        e.mgr.Stray,
	})
}

// saveSTUN keeps the coordinator's STUN servers in the state file.
func (e *Engine) saveSTUN(servers, servers6 []string) error {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	st := e.saved
	st.STUN, st.STUN6 = servers, servers6
	if err := saveState(e.cfg.StateDir, st); err != nil {
		return err
	}
	e.saved = st
	return nil
}

// sendCoordinator queues a message for the coordinator. It never blocks;
// while the stream is down the message is dropped (the node resends its
// state after each welcome).
func (e *Engine) sendCoordinator(msg wire.StreamMsg) {
	if err := e.stream.Send(msg); err != nil {
		e.log.Debug("message to the coordinator not sent", "type", msg.Type, "err", err)
	}
}

// reportRelay tells the coordinator that a relay node did not carry this
// node's traffic (relayclient.Options.Report); peer names the peer whose
// relayed pings went unanswered, nil for this node's own echoes.
func (e *Engine) reportRelay(relay crypto.PublicKey, peer *crypto.PublicKey) {
	e.sendCoordinator(wire.StreamMsg{Type: wire.MsgRelayReport, RelayKey: &relay, Peer: peer})
}

// rendezvous asks the coordinator to cue both sides to punch now.
func (e *Engine) rendezvous(peer crypto.PublicKey) {
	e.sendCoordinator(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &peer})
}

// Down asks the node to leave (the control socket's /v1/down).
func (e *Engine) Down() {
	if e.stop != nil {
		e.stop()
	}
}

// pathEvents carries out the path manager's requests. The manager never
// waits for this loop; each request here is itself non-blocking.
func (e *Engine) pathEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-e.mgr.Events():
			switch ev.Kind {
			case path.EventRendezvous:
				e.rendezvous(ev.Peer)
			case path.EventPathLost:
				e.disc.Kick()
			case path.EventPunchTCP:
				e.punchTCP(ev.Peer, ev.Remote)
			case path.EventRelayUnanswered:
				e.relays.PeerUnanswered(ev.Peer, ev.Remote, ev.Since)
			case path.EventCoordinatorDoubted:
				if e.stream.Check() {
					e.log.Info("a peer sees this node offline at its coordinator; checking the stream", "peer", ev.Peer.Short())
				}
			}
		}
	}
}

// dialFrom dials from a fixed local port (the TCP punch port), or from any
// port when that one is busy (a previous connection to the same address
// in TIME_WAIT); a coordinator that doesn't answer is not dialled twice.
func dialFrom(port uint16) func(ctx context.Context, network, addr string) (net.Conn, error) {
	fixed := tcppunch.FromPort(control.Dialer(), port)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := fixed.DialContext(ctx, network, addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return c, err
		}
		return control.Dialer().DialContext(ctx, network, addr)
	}
}

// timedDial reports how long each successful TCP connect took: one round
// trip (SYN, SYN-ACK) to the host dialled.
func timedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), report func(time.Duration)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		c, err := dial(ctx, network, addr)
		if err == nil {
			report(time.Since(start))
		}
		return c, err
	}
}

// punchTCP tries a TCP hole punch to a peer (path.Hooks) and, when it
// connects, gives the path manager the direct TCP path until it closes.
func (e *Engine) punchTCP(peer crypto.PublicKey, remote netip.AddrPort) {
	if e.tcp == nil {
		e.mgr.SetTCPRoute(peer, nil)
		return
	}
	log := e.log.With("component", "tcp-punch", "peer", peer.Short(), "remote", remote)
	e.tasks.Go(func() {
		p, err := e.tcp.Punch(e.runCtx, tcppunch.Options{Priv: e.priv, Peer: peer, Remote: remote, Log: log, Deliver: e.bind.DeliverFrame})
		if err != nil {
			log.Info("TCP hole punch failed; the relay carries this peer", "err", err)
			e.mgr.SetTCPRoute(peer, nil)
			return
		}
		e.mgr.SetTCPRoute(peer, e.bind.Stream(p, bind.RouteInfo{Kind: bind.KindDirect, Addr: p.RemoteAddr(), Via: "tcp " + p.RemoteAddr().String()}))
		err = p.Run(e.runCtx)
		log.Info("direct TCP path closed", "err", err)
		e.mgr.SetTCPRoute(peer, nil)
	})
}
