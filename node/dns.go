package node

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/meshdns"
	"github.com/meshnode/meshnode/node/osdns"
)

// upstreamRefresh is how often the upstream resolvers are read again: a
// laptop's change of network brings new ones (DHCP rewrites the file).
const upstreamRefresh = 10 * time.Second

// osApplyTimeout bounds pointing the OS at the resolver, and taking it
// back on the way down.
const osApplyTimeout = 10 * time.Second

// names is the node's resolver (accept_dns) and the OS's view of it: the
// table of names fed by the registry and the welcome, the resolver on the
// overlay addresses, and the OS pointed at it.
type names struct {
	table   *meshdns.Table
	fwd     *meshdns.Forwarder
	handler *meshdns.Handler
	srv     *meshdns.Server
	// listenErr says which overlay addresses the resolver could not
	// listen on (port 53 needs root or CAP_NET_BIND_SERVICE).
	listenErr error
	overlay   []netip.Prefix
	// src reads the upstream resolvers; os is the same manager, nil when
	// the node has no OS device (tests): the OS is not pointed at the
	// resolver.
	src  *osdns.Manager
	os   *osdns.Manager
	log  *slog.Logger
	kick chan struct{}

	mu        sync.Mutex
	upstreams []netip.AddrPort // as last read, for logging changes
}

// osDNS is the OS integration for this node's settings.
func (e *Engine) osDNS() *osdns.Manager {
	paths := osdns.DefaultPaths()
	if e.opts.DNSPaths != nil {
		paths = *e.opts.DNSPaths
	}
	return osdns.New(osdns.Options{
		Paths:            paths,
		StateDir:         e.cfg.StateDir,
		ManageResolvConf: e.cfg.DNS == config.DNSManageResolvConf,
		Interface:        e.tunName(),
		Log:              e.log.With("component", "dns"),
	})
}

// recoverDNS undoes what a crashed run left in the OS's DNS settings (a
// managed /etc/resolv.conf, resolver files), whatever this run's
// settings, before anything reads the upstreams.
func (e *Engine) recoverDNS() {
	if !e.osTUN {
		return
	}
	if err := e.osDNS().Recover(); err != nil {
		e.log.Error("restoring the DNS settings a previous run left", "err", err)
	}
}

// startDNS starts the resolver on the overlay addresses; the OS is
// pointed at it once the coordinator's welcome says the domain.
func (e *Engine) startDNS() {
	n := &names{
		table:   meshdns.NewTable(e.priv.Public(), e.state.routes()),
		fwd:     meshdns.NewForwarder(),
		overlay: e.state.routes(),
		log:     e.log.With("component", "dns"),
		kick:    make(chan struct{}, 1),
	}
	n.table.Set(e.state.Self)
	n.handler = meshdns.NewHandler(n.table, n.fwd, meshdns.DefaultLimits())
	n.src = e.osDNS()
	if e.osTUN {
		n.os = n.src
	}
	n.readUpstreams() // before the OS is changed
	listen := meshdns.KernelListeners()
	if e.opts.DNSListen != nil {
		listen = *e.opts.DNSListen
	}
	var addrs []netip.AddrPort
	for _, a := range e.state.Self.Addresses {
		addrs = append(addrs, netip.AddrPortFrom(a, meshdns.Port))
	}
	n.srv, n.listenErr = meshdns.Serve(n.handler, addrs, listen)
	if n.listenErr != nil {
		n.log.Warn("the resolver does not answer on every overlay address (port 53 needs root or CAP_NET_BIND_SERVICE)", "err", n.listenErr)
	}
	e.dns = n
}

// run points the OS at the resolver when the domain is known or
// changes, and reads the upstreams again from time to time.
func (n *names) run(ctx context.Context) {
	t := time.NewTicker(upstreamRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			n.applyOS(ctx)
		case <-t.C:
			n.readUpstreams()
		}
	}
}

// applyOS points the OS at the resolver's addresses for the domain.
func (n *names) applyOS(ctx context.Context) {
	if n.os == nil || len(n.srv.Addrs()) == 0 {
		return
	}
	cfg := osdns.Config{Domain: n.table.Domain(), ReverseZones: meshdns.ReverseZones(n.overlay)}
	for _, ap := range n.srv.Addrs() {
		cfg.Servers = append(cfg.Servers, ap.Addr())
	}
	ctx, cancel := context.WithTimeout(ctx, osApplyTimeout)
	defer cancel()
	if err := n.os.Apply(ctx, cfg); err != nil {
		n.log.Error("pointing the OS at the resolver", "err", err)
		return
	}
	mode, note := n.os.Mode()
	n.log.Info("mesh names", "domain", cfg.Domain, "resolver", cfg.Servers, "os", mode, "note", note)
}

// readUpstreams reads the machine's resolvers for the forwarder.
func (n *names) readUpstreams() {
	ups, err := n.src.Upstreams(n.overlay)
	if err != nil {
		n.log.Warn("reading the upstream resolvers", "err", err)
		return
	}
	n.fwd.SetUpstreams(ups)
	n.mu.Lock()
	changed := !slices.Equal(ups, n.upstreams)
	n.upstreams = ups
	n.mu.Unlock()
	if changed {
		n.log.Info("upstream resolvers", "servers", ups)
	}
}

// stop takes the OS's settings back and closes the resolver.
func (n *names) stop() {
	if n.os != nil {
		ctx, cancel := context.WithTimeout(context.Background(), osApplyTimeout)
		if err := n.os.Revert(ctx); err != nil {
			n.log.Error("taking back the OS's DNS settings", "err", err)
		}
		cancel()
	}
	n.srv.Close()
}

// setConfig applies the coordinator's DNS configuration (nil: an older
// coordinator's default) and has the OS follow a new domain.
func (n *names) setConfig(c *wire.DNSConfig) {
	cfg := wire.DNSConfig{Domain: wire.DefaultDNSDomain}
	if c != nil {
		cfg = *c
	}
	if err := cfg.Validate(); err != nil {
		n.log.Error("the coordinator's DNS configuration is invalid; keeping the current one", "err", err)
		return
	}
	n.table.SetConfig(cfg)
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// setDNS takes the welcome's DNS configuration (coordLink).
func (e *Engine) setDNS(c *wire.DNSConfig) {
	if e.dns != nil {
		e.dns.setConfig(c)
	}
}

// dnsPeers keeps the resolver's table of names (registry consumer).
type dnsPeers struct{ t *meshdns.Table }

func (d dnsPeers) Upsert(n wire.Node, _ *wire.Node) error {
	d.t.Set(n)
	return nil
}

func (d dnsPeers) Remove(n wire.Node) error {
	d.t.Remove(n.PublicKey)
	return nil
}

// dnsStatus is the resolver's state for status and `meshnode dns status`.
func (e *Engine) dnsStatus() localapi.DNS {
	n := e.dns
	if n == nil {
		return localapi.DNS{OS: osdns.ModeNone, OSNote: "accept_dns is false: no resolver, the OS's DNS untouched"}
	}
	st := localapi.DNS{Enabled: true, Domain: n.table.Domain(), OS: osdns.ModeNone, OSNote: "no OS device: the OS is not pointed at the resolver"}
	for _, ap := range n.srv.Addrs() {
		st.Listen = append(st.Listen, ap.String())
	}
	if n.listenErr != nil {
		st.ListenError = n.listenErr.Error()
	}
	if n.os != nil {
		st.OS, st.OSNote = n.os.Mode()
	}
	for _, u := range n.fwd.Upstreams() {
		st.Upstreams = append(st.Upstreams, u.String())
	}
	for _, r := range n.table.Records() {
		st.Records = append(st.Records, localapi.DNSRecord{Name: r.Name, Addresses: r.Addrs, Kind: r.Kind})
	}
	s := &n.handler.Stats
	st.Counters = map[string]uint64{
		"queries":        s.Queries.Load(),
		"answered":       s.Answered.Load(),
		"nxdomain":       s.NXDomain.Load(),
		"forwarded":      s.Forwarded.Load(),
		"servfail":       s.ServFail.Load(),
		"truncated":      s.Truncated.Load(),
		"rate_limited":   s.RateLimited.Load(),
		"refused_source": s.RefusedSource.Load(),
		"malformed":      s.Malformed.Load(),
	}
	return st
}

// peerName is a peer's name as the user may write it: NAME, or
// NAME.<domain> (with or without the final dot) while the resolver runs.
func (e *Engine) peerName(s string) string {
	s = strings.TrimSuffix(s, ".")
	if e.dns == nil {
		return s
	}
	if name, ok := strings.CutSuffix(strings.ToLower(s), "."+e.dns.table.Domain()); ok {
		return name
	}
	return s
}
