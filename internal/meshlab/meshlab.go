// Package meshlab runs a whole meshnode network in one process, without
// root: a real coordinator (HTTPS on loopback, STUN and relay on the NAT
// emulator), and real node engines with netstack TUNs whose UDP goes
// through internal/natlab. Tests build NAT topologies with it and assert
// what users see: paths, pings and TCP over the overlay.
package meshlab

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/metricvalue"
	"github.com/meshnode/meshnode/internal/natlab"
)

// Well-known lab addresses on the emulated internet (198.18.0.0/15, RFC
// 2544; 2001:2::/48, RFC 5180): the coordinator's two IPv4 addresses and
// its IPv6 one (its stun_listen_v6).
var (
	CoordIP    = netip.MustParseAddr("198.18.0.1")
	CoordAltIP = netip.MustParseAddr("198.18.0.2")
	// CoordRelay is the coordinator's UDP relay: its primary STUN port.
	CoordRelay = netip.AddrPortFrom(CoordIP, stunPort)
	CoordIP6   = netip.MustParseAddr("2001:2::1")
)

// STUN ports of the lab coordinator: the primary and, for RFC 5780, the
// alternate.
const (
	stunPort    = 3478
	stunAltPort = 3479
)

// Options tune a Mesh.
type Options struct {
	// Debug logs at debug level, with the emulator's packet log.
	Debug bool
	// DNSRecords are the coordinator's dns_records (NAME=IP).
	DNSRecords []string
	// Database is the coordinator's database: a PostgreSQL URL lets
	// AddCoordinator start more coordinators of the mesh on it. Empty:
	// SQLite in the data directory.
	Database string
	// PathReportGap shortens wire.PathReportGap for the nodes and the
	// coordinators alike (zero: the production gap), for tests that wait
	// for path reports.
	PathReportGap time.Duration
}

// Mesh is one in-process network.
type Mesh struct {
	t     testing.TB
	Lab   *natlab.Lab
	Coord *coordinator.Server
	// CoordLink is the path between the nodes and the coordinator's HTTPS
	// port: tests freeze it or slow it down.
	CoordLink *Proxy
	// Token is a reusable join token.
	Token string
	// RelayToken is a reusable join token that designates its nodes as
	// relays (coordinator.RelayTag), for nodes started with Relay.
	RelayToken string
	// metrics is the coordinator's registry (Metric reads it).
	metrics *prometheus.Registry
	log     *slog.Logger
	ctx     context.Context

	// coordCfg and coordAddr start the coordinator again
	// (StartCoordinator) with the same data and address; stopCoord stops
	// the running one, nil while it is stopped.
	coordCfg  config.Coordinator
	coordAddr string
	coordHost *natlab.Host
	stopCoord func()
	// crashCoord stops it without a goodbye (CrashCoordinator).
	crashCoord func()

	// pathReportGap is Options.PathReportGap.
	pathReportGap time.Duration

	mu    sync.Mutex
	nodes []*Node
}

// New starts a lab and its coordinator; everything stops at test cleanup.
func New(t testing.TB, opts Options) *Mesh {
	t.Helper()
	debug := opts.Debug || os.Getenv("MESHLAB_DEBUG") != ""
	level := slog.LevelInfo
	var logf func(string, ...any)
	if debug {
		level = slog.LevelDebug
		logf = t.Logf
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{t: t, Lab: natlab.New(logf), log: log, ctx: ctx, pathReportGap: opts.PathReportGap}
	t.Cleanup(func() {
		m.CoordLink.Thaw()
		m.stopNodes()
		cancel()
		m.CoordLink.Close()
		if m.stopCoord != nil {
			m.stopCoord()
		}
		m.Lab.Close()
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("coordinator listener: %v", err)
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("coordinator proxy listener: %v", err)
	}
	m.coordAddr = ln.Addr().String()
	m.CoordLink = newProxy(front, m.coordAddr)
	cfg := config.DefaultCoordinator()
	cfg.DataDir = t.TempDir()
	cfg.Listen = m.coordAddr
	cfg.STUNListen = netip.AddrPortFrom(CoordIP, stunPort).String()
	cfg.STUNAlternate = netip.AddrPortFrom(CoordAltIP, stunAltPort).String()
	cfg.PublicURL = "https://" + front.Addr().String()
	cfg.DNSRecords = opts.DNSRecords
	cfg.Database = opts.Database
	m.coordCfg = cfg
	m.coordHost = m.Lab.NewHost("coordinator", CoordIP, CoordAltIP, CoordIP6)
	m.startCoordinator(ln)

	tok, err := m.Coord.CreateToken(ctx, coordinator.TokenOptions{Reusable: true, Expiry: time.Hour})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	m.Token = tok.String()
	relayTok, err := m.Coord.CreateToken(ctx, coordinator.TokenOptions{Reusable: true, Expiry: time.Hour, Tags: []string{coordinator.RelayTag}})
	if err != nil {
		t.Fatalf("create relay token: %v", err)
	}
	m.RelayToken = relayTok.String()
	return m
}

// startCoordinator starts the coordinator on ln, with its STUN and relay
// sockets on the lab's coordinator host.
func (m *Mesh) startCoordinator(ln net.Listener) {
	m.t.Helper()
	m.metrics = prometheus.NewRegistry()
	coord, err := coordinator.New(coordinator.Options{Config: m.coordCfg, Logger: m.log.With("side", "coordinator"), Registry: m.metrics, PathReportGap: m.pathReportGap})
	if err != nil {
		ln.Close()
		m.t.Fatalf("coordinator: %v", err)
	}
	m.Coord = coord
	halt := m.serve(coord, ln, m.coordHost, CoordIP, CoordAltIP, CoordIP6)
	m.stopCoord = func() {
		halt()
		coord.Close()
	}
	m.crashCoord = func() {
		m.CoordLink.Close()
		halt()
	}
}

// CrashCoordinator stops the coordinator without a goodbye, as a kill -9
// of its process looks to the nodes: every stream is cut (its proxy
// closes them and refuses new connections), and its STUN and relay
// sockets are gone. Its database lease is left to run (it ends at test
// cleanup): the nodes must not need one. It can't be started again.
func (m *Mesh) CrashCoordinator() {
	m.t.Helper()
	if m.stopCoord == nil {
		m.t.Fatal("CrashCoordinator: the coordinator is not running")
	}
	m.crashCoord()
	m.stopCoord = nil
	coord := m.Coord
	m.t.Cleanup(func() { coord.Close() })
}

// StopCoordinator stops the coordinator, as a crash or an outage of its
// host would: every stream ends, its HTTPS port refuses connections (the
// nodes' proxy closes them at once), its STUN and relay sockets are gone.
// StartCoordinator brings it back.
func (m *Mesh) StopCoordinator() {
	m.t.Helper()
	if m.stopCoord == nil {
		m.t.Fatal("StopCoordinator: the coordinator is not running")
	}
	m.stopCoord()
	m.stopCoord = nil
}

// StartCoordinator starts the stopped coordinator again, with its data
// directory (nodes, keys, certificate) and its addresses.
func (m *Mesh) StartCoordinator() {
	m.t.Helper()
	if m.stopCoord != nil {
		m.t.Fatal("StartCoordinator: the coordinator is running")
	}
	ln, err := net.Listen("tcp", m.coordAddr)
	if err != nil {
		m.t.Fatalf("coordinator listener on %s again: %v", m.coordAddr, err)
	}
	m.startCoordinator(ln)
}

// Metric is the value of the coordinator's metric name (a counter or a
// gauge) with label=value, or without labels when label is empty; 0 when
// it has no such sample.
func (m *Mesh) Metric(name, label, value string) float64 {
	m.t.Helper()
	v, err := metricvalue.Of(m.metrics, name, label, value)
	if err != nil {
		m.t.Fatalf("gather metrics: %v", err)
	}
	return v
}

func (m *Mesh) listen(h *natlab.Host, ip netip.Addr, port uint16) net.PacketConn {
	c, err := h.ListenPacket(netip.AddrPortFrom(ip, port))
	if err != nil {
		m.t.Fatalf("coordinator UDP %v:%d: %v", ip, port, err)
	}
	return c
}

// NAT adds a NAT router to the emulated internet.
func (m *Mesh) NAT(cfg natlab.NATConfig) *natlab.NAT {
	m.t.Helper()
	n, err := m.Lab.NewNAT(cfg)
	if err != nil {
		m.t.Fatalf("NAT %s: %v", cfg.Name, err)
	}
	return n
}

// testWriter sends logs to the test's log, shown on failure or with -v.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

var _ io.Writer = testWriter{}
