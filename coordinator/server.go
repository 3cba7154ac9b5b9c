// Package coordinator is meshnode's control server: it registers nodes with
// join tokens and gives them stable overlay addresses, keeps one stream to
// every node to push the peer map and cue hole punching, answers STUN, and
// serves an admin socket and Prometheus metrics. State lives in a Store.
package coordinator

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/coordinator/ui"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/admit"
	"github.com/meshnode/meshnode/internal/ratelog"
	"github.com/meshnode/meshnode/internal/version"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
	"github.com/meshnode/meshnode/relay"
)

// Files in the data directory.
const (
	dbFile      = "coordinator.db"
	keyFile     = "coordinator.key" // X25519 static key: stream proofs, relay hello
	certFile    = "tls.crt"
	certKeyFile = "tls.key"
	adminSocket = "admin.sock"
	// dataDirMode: the directory holds the database and private keys.
	dataDirMode = 0o700
)

// database is what store.Open takes: the database setting (a PostgreSQL
// URL or a SQLite file), or by default the SQLite file in the data
// directory.
func database(cfg config.Coordinator) string {
	if cfg.Database != "" {
		return cfg.Database
	}
	return filepath.Join(cfg.DataDir, dbFile)
}

// Settings the coordinator records at start, so admin commands run without
// it can still make tokens that point at it.
const (
	settingPublicURL = "public_url"
	settingPin       = "tls_pin"
)

// HTTP timeouts.
const (
	// readHeaderTimeout bounds slow-header clients (Slowloris).
	readHeaderTimeout = 10 * time.Second
	// requestBodyTimeout bounds reading a registration body (64 KiB at most).
	requestBodyTimeout = 30 * time.Second
	// idleTimeout closes idle keep-alive connections between requests.
	idleTimeout = 2 * time.Minute
	// shutdownTimeout bounds waiting for in-flight requests on shutdown.
	shutdownTimeout = 5 * time.Second
	// openTimeout bounds opening the database: SQLite's integrity check,
	// or waiting for PostgreSQL to come up.
	openTimeout = 2 * time.Minute
)

// preAuthLimits bound the connections to the HTTPS port that have not
// authenticated (a stream's challenge answered, a relay WebSocket bound):
// registrations, TLS handshakes, idle sockets. Timeout leaves a node a few
// round trips on a slow link (TCP, TLS 1.3, the upgrade, the challenge);
// PerSource leaves room for a few hundred nodes behind one carrier-grade
// NAT reconnecting at once; Total bounds what a flood from many sources
// costs (tens of MiB), and since a full gate evicts from the source
// holding the most, a node from any other source still gets in.
func preAuthLimits() admit.Limits {
	return admit.Limits{PerSource: 256, Total: 1024, Timeout: 5 * time.Second}
}

// Log budget for what others cause: a burst of logBurst records, then one
// per logEvery, per kind of source (nodes, strangers).
const (
	logEvery = time.Second
	logBurst = 20
)

// ErrNotFound is returned for an unknown node name or token ID.
var ErrNotFound = store.ErrNotFound

// Options configure a Server.
type Options struct {
	Config config.Coordinator
	Logger *slog.Logger // nil discards
	// Registry receives the metrics; nil makes a new registry, with the Go
	// runtime's and the process's metrics (go_*, process_*: memory,
	// goroutines, CPU, open files) beside the coordinator's. /metrics
	// serves it when it is also a prometheus.Gatherer (a *prometheus.Registry is).
	Registry prometheus.Registerer
	// PathReportGap overrides wire.PathReportGap in the limit on each
	// node's path reports: in-process labs whose nodes report more often
	// (node.Options.PathReportGap) shorten it alike.
	PathReportGap time.Duration
}

// Server is a coordinator.
type Server struct {
	cfg      config.Coordinator
	log      *slog.Logger
	store    store.Store
	key      crypto.PrivateKey
	cert     tls.Certificate
	pin      string
	pool     store.Pool
	hub      *hub
	paths    *pathTable // each online node's latest path report
	software *softwareBook
	met      *metrics
	gatherer prometheus.Gatherer
	stun     *stunserver.Server
	evidence *evidence
	relay    *relay.Server
	// challenges issues and checks registration challenges.
	challenges *challenger
	// limits bound each node's stream.
	limits streamLimits
	// dns is the mesh's DNS (dns_domain, dns_records), in every welcome.
	dns wire.DNSConfig
	// gate holds the HTTPS connections that have not authenticated.
	gate *admit.Gate
	// welcomeSlots paces welcomes (admitWelcome).
	welcomeSlots chan struct{}
	// failedRegs is each source's budget of failed registrations.
	failedRegs *admit.Budgets
	// autoApprove approves routes without the administrator
	// (auto_approve_routes); nil: none.
	autoApprove store.AutoApprover

	// nodeLog and strangerLog write what a node's or a stranger's
	// requests caused, at a bounded rate: a flood of them must not flood
	// the log.
	nodeLog     *ratelog.Logger
	strangerLog *ratelog.Logger

	// writeMu orders registrations and removals with the hub's in-memory
	// view, so that a node removed while it registers can't linger in maps.
	writeMu sync.Mutex

	// id names this run of the coordinator in the presence it records
	// (presence.go); lease is how it keeps its lease, presence writes it.
	// shared: the database is PostgreSQL, which other coordinators may
	// share; on SQLite, which one coordinator owns, no presence is
	// recorded and no lease kept.
	shared   bool
	id       string
	lease    leaseTiming
	reach    leaseReach
	presence *presenceWriter
	// pathFlush spaces the writes of path reports for the other
	// coordinators' pages (pathshare.go).
	pathFlush time.Duration
	// stopFollow ends the work for the other coordinators (follow,
	// keepLease, writePresence): background waits for it.
	stopFollow  context.CancelFunc
	followCtx   context.Context
	background  sync.WaitGroup
	startLeases sync.Once
	leaseErr    error // why the lease could not be taken; set once
	// relayAdvertised: this coordinator's relay is recorded with its
	// lease (meshrelay.go); owned by the lease's goroutine.
	relayAdvertised bool

	// seenMu guards seenWritten: when each node's presence was last
	// stored (recordSeen).
	seenMu      sync.Mutex
	seenWritten map[crypto.PublicKey]time.Time

	mu          sync.Mutex
	metricsAddr net.Addr         // where Run serves metrics, once it does
	ui          *ui.Server       // the web page, while ServeUI serves it
	uiAddr      net.Addr         // where ServeUI serves it
	servedURL   string           // https://IP:port of the first specific address Serve got
	stunAddrs   []netip.AddrPort // primary, then alternate: what the welcome advertises
	stunAddr6   netip.AddrPort   // the IPv6 socket (stun_listen_v6), when there is one
	mesh        []store.Lease    // the live coordinators at the last lease renewal (mesh.go)
	closed      bool
	// restores end relay suspensions (relayhealth.go), by relay.
	restores map[crypto.PublicKey]*time.Timer
}

// New opens the data directory (creating the keys, certificate and
// database on first use) and returns a Server that is not yet listening.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator settings: %w", err)
	}
	autoApprove, err := newAutoApprover(cfg)
	if err != nil {
		return nil, fmt.Errorf("coordinator settings: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, dataDirMode); err != nil {
		return nil, fmt.Errorf("data dir %s: %w (it must be creatable and writable by the coordinator's user)", cfg.DataDir, err)
	}
	key, err := crypto.LoadOrCreatePrivateKey(filepath.Join(cfg.DataDir, keyFile))
	if err != nil {
		return nil, err
	}
	cert, pin, err := loadCert(cfg, urlHost(cfg.PublicURL))
	if err != nil {
		return nil, err
	}
	dns, err := cfg.DNS()
	if err != nil {
		return nil, fmt.Errorf("coordinator settings: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	st, err := store.Open(ctx, database(cfg))
	if err != nil {
		return nil, err
	}
	shared := store.IsPostgresURL(database(cfg))
	if shared {
		own := key
		if key, err = sharedKey(ctx, st, own); err != nil {
			st.Close()
			return nil, err
		}
		if key != own {
			log.Info("using the coordinator key of the mesh's database instead of this data directory's own", "key", key.Public().Short(), "own", own.Public().Short())
		}
	}
	// Watched before the hub is loaded: what other coordinators commit
	// from here on is applied after the load (follow.go).
	followCtx, stopFollow := context.WithCancel(context.Background())
	changes := st.Watch(followCtx)
	nodes, err := st.Nodes(ctx)
	if err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	software, err := st.Software(ctx)
	if err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	acc, err := loadAccess(ctx, st, nodes, policy.Network{V4: cfg.Network, V6: cfg.NetworkV6}, log)
	if err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          log,
		nodeLog:      ratelog.New(log, logEvery, logBurst),
		strangerLog:  ratelog.New(log, logEvery, logBurst),
		store:        st,
		key:          key,
		cert:         cert,
		pin:          pin,
		pool:         store.Pool{V4: cfg.Network, V6: cfg.NetworkV6},
		hub:          newHub(nodes, acc),
		paths:        newPathTable(store.IsPostgresURL(database(cfg))),
		software:     newSoftwareBook(software),
		challenges:   newChallenger(),
		limits:       defaultStreamLimits(),
		welcomeSlots: make(chan struct{}, welcomeSlots),
		dns:          dns,
		failedRegs:   newFailedRegistrations(),
		autoApprove:  autoApprove,
		seenWritten:  make(map[crypto.PublicKey]time.Time),
		restores:     make(map[crypto.PublicKey]*time.Timer),
		shared:       shared,
		id:           rand.Text(),
		lease:        defaultLease(),
		presence:     newPresenceWriter(),
		pathFlush:    pathFlush,
		stopFollow:   stopFollow,
		followCtx:    followCtx,
	}
	if opts.PathReportGap > 0 {
		s.limits.pathRate = rate.Every(opts.PathReportGap)
	}
	reg := opts.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	s.gatherer, _ = reg.(prometheus.Gatherer)
	s.gate = admit.New(preAuthLimits(), func(reason string) { s.met.preAuthClosed.WithLabelValues(reason).Inc() })
	if s.met, err = newMetrics(reg, s.hub, s.paths, s.gate, st); err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	s.relay = relay.New(relay.Options{Key: key, Auth: s.hub, Log: log.With("component", "relay"), Registry: reg, Rate: mbitToBytes(cfg.RelayRate)})
	s.evidence = newEvidence(key, s.hub.has, s.freshEvidence)
	s.stun = stunserver.New(stunserver.Options{
		Software: "meshnode " + version.Version,
		Logger:   log,
		Count:    func(result string) { s.met.stun.WithLabelValues(result).Inc() },
		Relay:    s.relay.ServeUDP,
		Auth:     s.evidence,
	})
	if err := s.followOnline(ctx); err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	if err := s.followSuspensions(ctx); err != nil {
		stopFollow()
		st.Close()
		return nil, err
	}
	s.background.Go(func() { s.follow(followCtx, changes) })
	return s, nil
}

// Fingerprint is the pin of the served certificate, as join tokens carry it.
func (s *Server) Fingerprint() string { return s.pin }

// Close releases the store. Serve, ServeSTUN and Run must have returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, t := range s.restores {
		t.Stop()
	}
	s.mu.Unlock()
	s.stopFollow()
	s.background.Wait()
	if s.shared {
		s.endLease()
	}
	return s.store.Close()
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		// Nodes pin with crypto.PinnedTLSConfig, which requires TLS 1.3.
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		// HTTP/1.1 only: the stream is a WebSocket upgrade (RFC 6455), which
		// HTTP/2 does not carry without RFC 8441.
		NextProtos: []string{"http/1.1"},
	}
}

func (s *Server) handler(ctx context.Context, streams *sync.WaitGroup) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathRegisterChallenge, s.handleRegisterChallenge)
	mux.HandleFunc("POST "+wire.PathRegister, s.handleRegister)
	mux.HandleFunc("GET "+wire.PathStream, func(w http.ResponseWriter, r *http.Request) {
		streams.Add(1)
		s.handleStream(ctx, w, r, streams.Done)
	})
	mux.HandleFunc("GET "+wire.PathRelay, func(w http.ResponseWriter, r *http.Request) {
		streams.Add(1)
		defer streams.Done()
		s.relay.ServeHTTP(w, r)
	})
	return mux
}

// ErrNoGatherer means metrics were asked for but Options.Registry can't
// be gathered.
var ErrNoGatherer = errors.New("metrics: the registry given in Options.Registry is not a prometheus.Gatherer")

// ServeMetrics serves Prometheus metrics over plain HTTP on ln (the
// metrics_listen address) until ctx is done. They are kept off the public
// HTTPS port: who is online, how many registrations fail, what the relay
// carries is for the operator, not for anyone who can reach the port.
func (s *Server) ServeMetrics(ctx context.Context, ln net.Listener) error {
	if s.gatherer == nil {
		return ErrNoGatherer
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+wire.PathMetrics, promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          s.errorLog(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if err := serveHTTP(ctx, hs, ln); err != nil {
		return fmt.Errorf("metrics on %v: %w", ln.Addr(), err)
	}
	return nil
}

// Serve serves the control API over HTTPS on ln until ctx is done, then
// shuts down: streams end (nodes reconnect elsewhere or later) and Serve
// returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.noteServed(ln.Addr())
	if err := s.serveLease(); err != nil {
		return err
	}
	var streams sync.WaitGroup
	hs := &http.Server{
		Handler:           s.handler(ctx, &streams),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          s.errorLog(),
		// Streams outlive ServeHTTP's connection tracking (they are
		// hijacked); deriving their contexts from ctx ends them on shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
		// Handlers promote the connection once its node has proven its key.
		ConnContext: admit.ConnContext,
	}
	err := serveHTTP(ctx, hs, tls.NewListener(s.gate.Listener(paced(ln, s.gate)), s.tlsConfig()))
	streams.Wait()
	if err != nil {
		return fmt.Errorf("control API on %v: %w", ln.Addr(), err)
	}
	return nil
}

// serveLease takes this coordinator's lease and starts keeping it, and
// recording its nodes' presence, once: before the first stream.
func (s *Server) serveLease() error {
	s.startLeases.Do(func() {
		if !s.shared {
			return
		}
		if err := s.takeLease(s.followCtx); err != nil {
			s.leaseErr = fmt.Errorf("take this coordinator's lease: %w", err)
			return
		}
		s.background.Go(func() { s.keepLease(s.followCtx) })
		s.background.Go(func() { s.writePresence(s.followCtx) })
		s.background.Go(func() { s.writePaths(s.followCtx) })
	})
	return s.leaseErr
}

// errorLog routes net/http's own messages to slog at debug level: they are
// failed TLS handshakes (a node with a stale pin, scanners), the client's
// problem rather than the coordinator's.
func (s *Server) errorLog() *log.Logger {
	return slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}

// serveHTTP runs hs on ln until ctx is done or it fails.
func serveHTTP(ctx context.Context, hs *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// Requests still running (or connections that never sent one)
		// after the grace period are cut: the shutdown was asked for.
		err = hs.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// ServeSTUN answers STUN on conns until ctx is done. The conns' addresses
// are what welcome messages advertise.
func (s *Server) ServeSTUN(ctx context.Context, conns stunserver.Conns) error {
	var addrs []netip.AddrPort
	for _, c := range []net.PacketConn{conns.Primary, conns.Alternate} {
		if c == nil {
			continue
		}
		a, err := stunserver.LocalAddrPort(c)
		if err != nil {
			return fmt.Errorf("stun: %w", err)
		}
		addrs = append(addrs, a)
	}
	var v6 netip.AddrPort
	if conns.V6 != nil {
		a, err := stunserver.LocalAddrPort(conns.V6)
		if err != nil {
			return fmt.Errorf("stun (IPv6): %w", err)
		}
		v6 = a
	}
	s.mu.Lock()
	s.stunAddrs, s.stunAddr6 = addrs, v6
	s.mu.Unlock()
	return s.stun.Serve(ctx, conns)
}

// noteServed remembers the first listener with a specific IP as the URL
// nodes may dial when public_url is not set.
func (s *Server) noteServed(a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || ap.Addr().IsUnspecified() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.servedURL == "" {
		s.servedURL = "https://" + ap.String()
	}
}

// publicURL is what tokens carry: public_url, else the served address.
func (s *Server) publicURL() string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.servedURL
}

// stunOffer is what a welcome tells a node of the coordinator's STUN
// servers, which also carry the UDP relay.
type stunOffer struct {
	v4 []string // primary first
	v6 []string // the IPv6 socket, a literal [IP]:port
}

// stunServers lists the STUN addresses for a welcome, as a node should dial
// them: a socket bound to an unspecified address is advertised with the
// public URL's host, or else with the host the node itself dialed.
func (s *Server) stunServers(requestHost string) stunOffer {
	s.mu.Lock()
	addrs, v6 := s.stunAddrs, s.stunAddr6
	s.mu.Unlock()
	host := urlHost(s.publicURL())
	if host == "" {
		host = hostOnly(requestHost)
	}
	var out stunOffer
	for _, a := range addrs {
		h := a.Addr().String()
		if a.Addr().IsUnspecified() {
			if host == "" {
				continue
			}
			h = host
		}
		out.v4 = append(out.v4, net.JoinHostPort(h, fmt.Sprint(a.Port())))
	}
	if v6.IsValid() {
		out.v6 = []string{v6.String()}
	}
	return out
}

// urlHost is the host of a URL without its port, or "".
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// hostOnly strips an optional port from a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// mbitToBytes converts a rate in Mbit/s to bytes per second.
func mbitToBytes(mbit int) float64 { return float64(mbit) * 1e6 / 8 }
