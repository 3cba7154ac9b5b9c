package meshlab

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/internal/natlab"
)

// Coordinator is another coordinator of the mesh, on the lab coordinator's
// database (Options.Database): its own data directory and certificate,
// HTTPS on loopback behind its own proxy, and STUN and relay on its own
// host of the emulated internet.
type Coordinator struct {
	Server *coordinator.Server
	// Link is the path between the nodes and its HTTPS port.
	Link *Proxy
	// Token is a reusable join token naming this coordinator alone: nodes
	// that join with it (NodeOptions.Token) stream to it, and learn of the
	// others from its welcome.
	Token string
	// Relay is its UDP relay, its primary STUN port; URL its public
	// HTTPS URL (the proxy's), where its TCP relay is.
	Relay netip.AddrPort
	URL   string

	stopOnce sync.Once
	stop     func()
}

// AddCoordinator starts another coordinator on the lab coordinator's
// database, which must be PostgreSQL, with its STUN and relay at ip and
// alt (for RFC 5780) on a host named name. It stops at test cleanup, or
// with Stop.
func (m *Mesh) AddCoordinator(name string, ip, alt netip.Addr) *Coordinator {
	m.t.Helper()
	if m.coordCfg.Database == "" {
		m.t.Fatal("AddCoordinator: the mesh has no shared database; set Options.Database to a PostgreSQL URL")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatalf("coordinator %s listener: %v", name, err)
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		m.t.Fatalf("coordinator %s proxy listener: %v", name, err)
	}
	link := newProxy(front, ln.Addr().String())
	cfg := m.coordCfg
	cfg.DataDir = m.t.TempDir()
	cfg.Listen = ln.Addr().String()
	cfg.STUNListen = netip.AddrPortFrom(ip, stunPort).String()
	cfg.STUNAlternate = netip.AddrPortFrom(alt, stunAltPort).String()
	cfg.PublicURL = "https://" + front.Addr().String()
	srv, err := coordinator.New(coordinator.Options{Config: cfg, Logger: m.log.With("side", name), Registry: prometheus.NewRegistry(), PathReportGap: m.pathReportGap})
	if err != nil {
		ln.Close()
		link.Close()
		m.t.Fatalf("coordinator %s: %v", name, err)
	}
	c := &Coordinator{Server: srv, Link: link, Relay: netip.AddrPortFrom(ip, stunPort), URL: cfg.PublicURL}
	stop := m.serve(srv, ln, m.Lab.NewHost(name, ip, alt), ip, alt, netip.Addr{})
	c.stop = func() {
		stop()
		srv.Close()
		link.Close()
	}
	m.t.Cleanup(c.Stop)
	tok, err := srv.CreateToken(m.ctx, coordinator.TokenOptions{Reusable: true, Expiry: time.Hour})
	if err != nil {
		m.t.Fatalf("coordinator %s: create token: %v", name, err)
	}
	tok.More = nil
	c.Token = tok.String()
	return c
}

// CoordURL is the lab coordinator's public HTTPS URL, where its TCP relay
// is.
func (m *Mesh) CoordURL() string { return m.coordCfg.PublicURL }

// Stop stops the coordinator, as a clean shutdown does: it says goodbye
// to the others, its streams end and its STUN and relay sockets close.
func (c *Coordinator) Stop() { c.stopOnce.Do(c.stop) }

// serve serves coord's control API on ln, and its STUN and relay on host
// at ip and alt (the RFC 5780 pair) and ip6 when valid, until the
// returned halt, which closes it all but leaves coord open (a crash
// says no goodbye).
func (m *Mesh) serve(coord *coordinator.Server, ln net.Listener, host *natlab.Host, ip, alt, ip6 netip.Addr) (halt func()) {
	conns := stunserver.Conns{
		Primary:   m.listen(host, ip, stunPort),
		AltPort:   m.listen(host, ip, stunAltPort),
		AltIP:     m.listen(host, alt, stunPort),
		Alternate: m.listen(host, alt, stunAltPort),
	}
	pcs := []net.PacketConn{conns.Primary, conns.AltPort, conns.AltIP, conns.Alternate}
	if ip6.IsValid() {
		conns.V6 = m.listen(host, ip6, stunPort)
		pcs = append(pcs, conns.V6)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { coord.Serve(ctx, ln) })
	wg.Go(func() { coord.ServeSTUN(ctx, conns) })
	return func() {
		cancel()
		wg.Wait()
		for _, pc := range pcs {
			pc.Close()
		}
	}
}
