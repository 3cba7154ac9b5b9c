package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/control"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/node/tcppunch"
	"github.com/meshnode/meshnode/tun"
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

	timing := path.DefaultTiming(e.cfg.Keepalive)
	if e.opts.Timing != nil {
		timing = *e.opts.Timing
	}
	inner := e.opts.Bind
	if inner == nil {
		inner = conn.NewStdNetBind()
	}
	e.bind = bind.New(inner, e.opts.AuxListen)
	e.mgr = path.New(crypto.NewSealer(e.priv), e.bind, timing, e.log.With("component", "path"))
	if e.cfg.TCPPunch {
		e.mgr.EnableTCPPunch()
	}
	if e.opts.AuxListen != nil {
		e.mgr.SetAux(e.bind)
	}
	e.prober = discovery.NewProber(e.bind)
	e.relay = relayclient.New(e.priv, e.bind, e.log.With("component", "relay"), func(r bind.Route) { e.setRelay(false, r) })
	e.bind.Attach(e.mgr, bind.Handlers{
		STUN:         e.prober.HandleSTUN,
		Disco:        e.mgr.HandleDisco,
		RelayedDisco: e.mgr.HandleRelayedDisco,
		RelayControl: e.relay.HandleControl,
	})
	e.dev = device.NewDevice(e.tun, e.bind, wgLogger(e.log))
	defer e.dev.Close()
	if err := e.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", e.priv.Hex(), e.cfg.ListenPort)); err != nil {
		return fmt.Errorf("configure WireGuard (listen_port %d in use? set another or 0): %w", e.cfg.ListenPort, err)
	}
	if err := e.dev.Up(); err != nil {
		return fmt.Errorf("start WireGuard on UDP port %d (in use? set listen_port to another or 0): %w", e.cfg.ListenPort, err)
	}

	ln, err := localapi.Listen(e.cfg.Socket, e.cfg.SocketGroup)
	if err != nil {
		return err
	}

	streamClient := control.NewHTTPClient(e.state.Pin)
	if e.cfg.TCPPunch {
		if l, err := tcppunch.NewListener(ctx, e.bind.Port()); err != nil {
			e.log.Warn("TCP hole punching off: cannot listen on the TCP port", "port", e.bind.Port(), "err", err)
		} else {
			e.tcp = l
			defer l.Close()
			// The stream leaves from the punch port, so the coordinator
			// sees (and offers peers) this node's public TCP mapping.
			t := streamClient.Transport.(*http.Transport)
			t.DialContext = dialFrom(l.Port())
			t.MaxConnsPerHost = 1
		}
	}
	e.stream = &control.Stream{
		URL:      e.state.CoordinatorURL,
		Client:   streamClient,
		Priv:     e.priv,
		CoordKey: e.state.CoordinatorKey,
		Log:      e.log.With("component", "control"),
	}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { e.mgr.Run(ctx) })
	wg.Go(func() { e.pathEvents(ctx) })
	wg.Go(func() { e.discoveryLoop(ctx) })
	wg.Go(func() { e.relay.Run(ctx) })
	if e.cfg.PortMapping {
		wg.Go(func() { e.keepPortMapping(ctx) })
	}
	if e.cfg.RelayListen != "" {
		if err := e.serveRelay(ctx, &wg); err != nil {
			return err
		}
	}
	tcpRelay := &relayclient.StreamClient{
		URL:      e.state.CoordinatorURL,
		Client:   control.NewHTTPClient(e.state.Pin),
		Priv:     e.priv,
		CoordKey: e.state.CoordinatorKey,
		Log:      e.log.With("component", "relay-tcp"),
		Deliver:  e.bind.DeliverFrame,
		Routes:   e.bind.Stream,
		OnChange: func(r bind.Route) { e.setRelay(true, r) },
		Want:     e.wantTCPRelay,
	}
	wg.Go(func() { tcpRelay.Run(ctx) })
	wg.Go(func() {
		if err := localapi.Serve(ctx, ln, e, e.log); err != nil {
			e.log.Error("control socket", "err", err)
		}
	})
	wg.Go(func() {
		if err := e.stream.Run(ctx, e); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("coordinator: %w", err)
			e.stop()
		}
	})
	e.log.Info("meshnode up", "name", e.state.Self.Name, "addresses", e.state.Self.Addresses, "interface", e.tunName(), "port", e.bind.Port())
	e.progress(fmt.Sprintf("up as %s %v on %s; waiting for the coordinator's peer map", e.state.Self.Name, e.state.Self.Addresses, e.tunName()))
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

// Down asks the node to leave (the control socket's /v1/down).
func (e *Engine) Down() {
	if e.stop != nil {
		e.stop()
	}
}

func (e *Engine) openTUN() error {
	if e.opts.NewTUN != nil {
		dev, err := e.opts.NewTUN(e.state.Self.Addresses, e.cfg.MTU)
		if err != nil {
			return fmt.Errorf("create TUN: %w", err)
		}
		e.tun = dev
		return nil
	}
	dev, err := tun.Create(e.cfg.TUNDriver, e.cfg.Interface, e.cfg.MTU)
	if err != nil {
		return err
	}
	e.tun, e.osTUN = dev, true
	if err := tun.Configure(e.tunConfig()); err != nil {
		dev.Close()
		return err
	}
	return nil
}

func (e *Engine) tunConfig() tun.Config {
	return tun.Config{
		Name:      e.tunName(),
		MTU:       e.cfg.MTU,
		Addresses: e.state.prefixes(),
		Routes:    e.state.routes(),
	}
}

func (e *Engine) tunName() string {
	if e.tun == nil {
		return e.cfg.Interface
	}
	name, err := e.tun.Name()
	if err != nil {
		return e.cfg.Interface
	}
	return name
}

// closeTUN removes the routes and addresses this node added. The device
// itself is closed by wireguard-go's device.Close.
func (e *Engine) closeTUN() {
	if !e.osTUN {
		return
	}
	if err := tun.Deconfigure(e.tunConfig()); err != nil {
		e.log.Warn("removing routes", "err", err)
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
				e.Kick()
			case path.EventPunchTCP:
				e.punchTCP(ev.Peer, ev.Remote)
			}
		}
	}
}

// dialFrom dials from a fixed local port (the TCP punch port), or from any
// port when that one is busy (a previous connection in TIME_WAIT).
func dialFrom(port uint16) func(ctx context.Context, network, addr string) (net.Conn, error) {
	fixed := tcppunch.Dialer(port)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := fixed.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		var ephemeral net.Dialer
		return ephemeral.DialContext(ctx, network, addr)
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
