package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/relay"
)

// Run listens as configured (control API, STUN, metrics, web page, admin
// socket),
// tells systemd it is ready, and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Before anything is written: a second coordinator must not touch the
	// first one's recorded settings.
	if err := s.checkAlone(); err != nil {
		return err
	}
	api, err := (&net.ListenConfig{KeepAlive: wire.TCPKeepalive}).Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen (control API): %w", err)
	}
	defer api.Close()
	conns, err := listenSTUN(s.cfg.STUNListen, s.cfg.STUNAlternate, s.cfg.STUNListenV6)
	if err != nil {
		return err
	}
	defer conns.close()
	var metrics net.Listener
	if s.cfg.MetricsListen != "" {
		if metrics, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
			return fmt.Errorf("listen (metrics_listen): %w (set metrics_listen to a free host:port, or to \"\" for no metrics)", err)
		}
		defer metrics.Close()
		s.mu.Lock()
		s.metricsAddr = metrics.Addr()
		s.mu.Unlock()
	}
	var page net.Listener
	if s.cfg.UIListen != "" {
		if page, err = net.Listen("tcp", s.cfg.UIListen); err != nil {
			return fmt.Errorf("listen (ui_listen): %w (set ui_listen to a free loopback host:port, or to \"\" for no web page)", err)
		}
		defer page.Close()
	}
	s.noteServed(api.Addr())
	// Recorded before the admin socket appears: admin commands take the
	// socket as the sign that the coordinator is up. The write is short and
	// completes even when a signal arrives meanwhile.
	if err := s.recordSettings(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	admin, err := s.listenAdmin()
	if err != nil {
		return err
	}
	defer admin.Close()

	log := s.log.With("api", api.Addr().String(), "stun", conns.Primary.LocalAddr().String(), "admin", admin.Addr().String(), "pin", s.pin)
	if conns.Alternate != nil {
		log = log.With("stun_alternate", conns.Alternate.LocalAddr().String())
	}
	if conns.V6 != nil {
		log = log.With("stun_v6", conns.V6.LocalAddr().String())
	}
	if metrics != nil {
		log = log.With("metrics", metrics.Addr().String())
	}
	if page != nil {
		log = log.With("ui", page.Addr().String())
	}
	if url := s.publicURL(); url != "" {
		log.Info("coordinator listening", "public_url", url)
	} else {
		log.Warn("coordinator listening without a public URL: join tokens can't be created until --public-url is set")
	}
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		s.log.Warn("notify systemd", "err", err)
	}

	servers := 3
	errc := make(chan error, servers+2)
	go func() { errc <- s.Serve(ctx, api) }()
	go func() { errc <- s.ServeSTUN(ctx, conns.Conns) }()
	go func() { errc <- s.serveAdmin(ctx, admin) }()
	if metrics != nil {
		servers++
		go func() { errc <- s.ServeMetrics(ctx, metrics) }()
	}
	if page != nil {
		servers++
		go func() { errc <- s.ServeUI(ctx, page) }()
	}
	var errs []error
	for range servers {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping) //nolint:errcheck // best effort on the way out
	s.log.Info("coordinator stopped")
	return errors.Join(errs...)
}

// recordSettings stores the public URL and pin so that admin commands run
// while the coordinator is down make tokens that match it.
func (s *Server) recordSettings(ctx context.Context) error {
	if url := s.publicURL(); url != "" {
		if err := s.store.SetSetting(ctx, settingPublicURL, url); err != nil {
			return err
		}
	}
	return s.store.SetSetting(ctx, settingPin, s.pin)
}

// stunSockets are the STUN sockets Run opened.
type stunSockets struct {
	stunserver.Conns
}

func (c stunSockets) close() {
	all := append([]net.PacketConn{c.Primary, c.AltPort, c.AltIP, c.Alternate, c.V6}, c.PrimaryMore...)
	for _, pc := range append(all, c.V6More...) {
		if pc != nil {
			pc.Close()
		}
	}
}

// listenShared opens the sockets of an address that carries the relay:
// one per CPU, sharing it (relay.ListenUDP), the first to answer from.
func listenShared(network, addr string) (net.PacketConn, []net.PacketConn, error) {
	conns, err := relay.ListenUDP(network, addr, 0)
	if err != nil {
		return nil, nil, err
	}
	return conns[0], conns[1:], nil
}

// listenSTUN opens the STUN sockets. listen is IP1:P1. With alternate
// (IP2:P2), RFC 5780 needs all four combinations, so Run also opens IP1:P2
// and IP2:P1. When alternate's port is 0 or equal to P1, P2 is P1+1. With
// v6, one more address serves IPv6 there; a wildcard listen then serves
// IPv4 only, so the two don't claim the same port. The addresses the relay
// is offered at (listen, v6) get a socket per CPU.
func listenSTUN(listen, alternate, v6 string) (stunSockets, error) {
	var c stunSockets
	var err error
	network := "udp"
	if host, port, err := net.SplitHostPort(listen); err == nil && v6 != "" && wildcard(host) {
		network, listen = "udp4", net.JoinHostPort("0.0.0.0", port)
	}
	if c.Primary, c.PrimaryMore, err = listenShared(network, listen); err != nil {
		return c, fmt.Errorf("listen (stun_listen): %w", err)
	}
	if v6 != "" {
		if c.V6, c.V6More, err = listenShared("udp6", v6); err != nil {
			c.close()
			return c, fmt.Errorf("listen (stun_listen_v6): %w (it must be an IPv6 address of this host)", err)
		}
	}
	if alternate == "" {
		return c, nil
	}
	p, err := stunserver.LocalAddrPort(c.Primary)
	if err != nil {
		c.close()
		return c, err
	}
	alt, err := net.ResolveUDPAddr("udp", alternate)
	if err != nil {
		c.close()
		return c, fmt.Errorf("stun_alternate %q: %w", alternate, err)
	}
	ip1, ip2 := p.Addr(), alt.AddrPort().Addr().Unmap()
	switch {
	case ip1.IsUnspecified():
		err = fmt.Errorf("stun_listen %q must name one IP address when stun_alternate is set: RFC 5780 answers come from two distinct IPs", listen)
	case !ip2.IsValid() || ip2.IsUnspecified():
		err = fmt.Errorf("stun_alternate %q must name one IP address, different from stun_listen's", alternate)
	case ip1 == ip2:
		err = fmt.Errorf("stun_alternate %q has the same IP as stun_listen %q; RFC 5780 needs a second IP", alternate, listen)
	case p.Port() == 65535:
		err = fmt.Errorf("stun_listen %q: port 65535 leaves no room for the alternate port; pick a lower one", listen)
	}
	if err != nil {
		c.close()
		return c, err
	}
	p1, p2 := p.Port(), alt.AddrPort().Port()
	if p2 == 0 || p2 == p1 {
		p2 = p1 + 1
	}
	for _, s := range []struct {
		dst  *net.PacketConn
		addr netip.AddrPort
	}{
		{&c.AltPort, netip.AddrPortFrom(ip1, p2)},
		{&c.AltIP, netip.AddrPortFrom(ip2, p1)},
		{&c.Alternate, netip.AddrPortFrom(ip2, p2)},
	} {
		if *s.dst, err = net.ListenPacket("udp", s.addr.String()); err != nil {
			c.close()
			return c, fmt.Errorf("listen (stun_alternate, RFC 5780 needs %s): %w", s.addr, err)
		}
	}
	return c, nil
}

// wildcard reports whether a listen host is every address (empty or
// unspecified), which Go opens as one dual-stack socket.
func wildcard(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}
