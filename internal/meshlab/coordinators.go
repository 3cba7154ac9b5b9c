package meshlab

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/stunserver"
)

// Coordinator is another coordinator of the mesh (AddCoordinator): its
// own data directory, certificate, HTTPS port behind its own proxy, and
// STUN and relay on its own lab host, on the first one's database.
type Coordinator struct {
	Server *coordinator.Server
	// Link is the path between the nodes and its HTTPS port.
	Link *Proxy
	// URL is its public URL, the proxy's.
	URL string
}

// AddCoordinator starts another coordinator of the mesh on the lab
// address ip (its STUN server and relay), sharing the first one's
// database, which must be PostgreSQL (Options.Database). It stops at test
// cleanup.
func (m *Mesh) AddCoordinator(name string, ip netip.Addr) *Coordinator {
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
	cfg := m.coordCfg
	cfg.DataDir = m.t.TempDir()
	cfg.Listen = ln.Addr().String()
	cfg.STUNListen = netip.AddrPortFrom(ip, stunPort).String()
	cfg.STUNAlternate = ""
	cfg.PublicURL = "https://" + front.Addr().String()
	c := &Coordinator{Link: newProxy(front, cfg.Listen), URL: cfg.PublicURL}
	srv, err := coordinator.New(coordinator.Options{Config: cfg, Logger: m.log.With("side", "coordinator-"+name), Registry: prometheus.NewRegistry()})
	if err != nil {
		ln.Close()
		c.Link.Close()
		m.t.Fatalf("coordinator %s: %v", name, err)
	}
	c.Server = srv
	primary := m.listen(m.Lab.NewHost("coordinator-"+name, ip), ip, stunPort)
	ctx, cancel := context.WithCancel(m.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ln) })
	wg.Go(func() { srv.ServeSTUN(ctx, stunserver.Conns{Primary: primary}) })
	m.t.Cleanup(func() {
		c.Link.Close()
		cancel()
		wg.Wait()
		primary.Close()
		srv.Close()
	})
	return c
}
