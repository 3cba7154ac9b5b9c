// Package node is the meshnode agent: it registers with the coordinator,
// opens the TUN device, runs wireguard-go over the shared-socket Bind, and
// keeps a direct path to every peer that the NATs allow (relay otherwise).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/underlay"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/control"
	"github.com/meshnode/meshnode/node/filter"
	"github.com/meshnode/meshnode/node/mapcache"
	"github.com/meshnode/meshnode/node/meshdns"
	"github.com/meshnode/meshnode/node/osdns"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/pmtu"
	"github.com/meshnode/meshnode/node/registry"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/node/routes"
	"github.com/meshnode/meshnode/node/tcppunch"
	"github.com/meshnode/meshnode/relay"
	"github.com/meshnode/meshnode/tun"
)

// Options configure an Engine. The seams (TUN, Bind, LocalAddrs) let tests
// run nodes without root over the NAT emulator.
type Options struct {
	Config config.Node
	Log    *slog.Logger
	// NewTUN creates the device for this node's overlay addresses instead
	// of a kernel TUN (netstack in root-free tests). The engine then does no
	// OS set-up (addresses, routes).
	NewTUN func(addrs []netip.Addr, mtu int) (tun.Device, error)
	// Bind is the inner conn.Bind; nil means wireguard-go's StdNetBind.
	Bind conn.Bind
	// AuxListen opens the auxiliary UDP sockets of the birthday technique;
	// nil means plain IPv4 sockets on any port.
	AuxListen func() (bind.UDPConn, error)
	// RelayListen opens the sockets of the relay this node serves
	// (relay_listen), all on that address; nil means one per CPU
	// (relay.ListenUDP).
	RelayListen func(addr string) ([]net.PacketConn, error)
	// LocalAddrs lists LAN candidate addresses; nil means the host's.
	LocalAddrs func() []netip.Addr
	// Timing overrides the path manager's timers (tests scale them down).
	Timing *path.Timing
	// RelayTiming overrides the relay client's timers.
	RelayTiming *relayclient.Timing
	// PathReportGap overrides wire.PathReportGap, the least time between
	// two path reports; in-process labs shorten it, and their
	// coordinator's limit with it (coordinator.Options.PathReportGap).
	PathReportGap time.Duration
	// DNSListen opens the resolver's sockets on the overlay addresses
	// (a user-space stack in tests); nil means the kernel's.
	DNSListen *meshdns.Listeners
	// DNSPaths are the OS's resolver files the upstreams are read from;
	// nil means the system's.
	DNSPaths *osdns.Paths
	// Progress, when set, hears what `up` is waiting for.
	Progress func(msg string)
	// Ready is closed once the node is up (device, socket, coordinator).
	Ready chan<- struct{}
	// UnfilteredSends, for tests only, lets the node send what its access
	// policy denies (it still filters what it receives): a test proves
	// that its peers drop it.
	UnfilteredSends bool
}

// Engine is a running node. It wires the parts together; each part owns its
// own state: the registry the peers, the path manager the paths, the
// discoverer this node's candidates, the relay client the relay in use.
type Engine struct {
	opts  Options
	cfg   config.Node
	log   *slog.Logger
	priv  crypto.PrivateKey
	pub   crypto.PublicKey // priv's, derived once: an X25519 multiplication
	state State            // the registration, fixed once New returns
	// stateMu guards saved: the state file as last written, which the
	// coordinators' welcomes (their list) and STUN servers update.
	stateMu sync.Mutex
	saved   State

	// The parts, made by Run.
	tun    tun.Device
	osTUN  bool
	bind   *bind.Bind
	dev    *device.Device
	mgr    *path.Manager
	peers  *registry.Registry
	disc   *discoverer
	stream *control.Stream
	relays *relayclient.Relays
	// relayFeed hands relays its candidates.
	relayFeed *relayFeed
	// tcp is the TCP hole-punching listener on TCP listen_port, when on.
	tcp *tcppunch.Listener
	// mtus holds each peer's path MTU; guard fits the TUN's packets to it.
	mtus  *pmtu.Table
	guard *pmtu.Guard
	// dns is the resolver of the mesh's names; nil with accept_dns false.
	dns *names
	// filter enforces the access policy on the TUN, both ways.
	filter *filter.Filter
	// handshakeAsks carries peers to start a handshake with (handshake.go).
	handshakeAsks chan crypto.PublicKey
	// mapCache keeps the peer map on disk (nil with peer_map_cache off);
	// fromCache is set while the node runs from the cached map.
	mapCache  *mapcache.Writer
	fromCache atomic.Pointer[cacheUse]

	// recordMu guards record: this node's own record as the coordinator
	// last sent it (a welcome, or a delta when the administrator changed
	// its tags or routes).
	recordMu sync.Mutex
	record   wire.Node

	// table decides what goes through which peer (subnet routes, the exit
	// node); osRoutes keeps the OS routes in line with it, and gateway
	// the forwarding of the routes this node serves. Both keepers are nil
	// without an OS TUN (tests), gateway too when it advertises nothing.
	table    *routes.Table
	osRoutes *routes.Keeper
	gateway  *routes.Keeper

	stop context.CancelFunc
	// runCtx and tasks belong to Run: work it starts later (TCP punches)
	// ends with it.
	runCtx context.Context
	tasks  sync.WaitGroup
}

// New loads the key and registration from the state directory, registering
// with the token when there is none yet.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.RelayListen == nil {
		opts.RelayListen = listenRelay
	}
	if opts.AuxListen == nil {
		opts.AuxListen = func() (bind.UDPConn, error) { return underlay.ListenUDP("udp4", nil) }
	}
	e := &Engine{
		opts:   opts,
		cfg:    opts.Config,
		log:    opts.Log,
		filter: filter.New(filter.Options{}),
	}
	if err := os.MkdirAll(e.cfg.StateDir, dirMode); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", e.cfg.StateDir, err)
	}
	priv, err := crypto.LoadOrCreatePrivateKey(filepath.Join(e.cfg.StateDir, keyFile))
	if err != nil {
		return nil, err
	}
	e.priv, e.pub = priv, priv.Public()
	st, err := loadState(e.cfg.StateDir)
	switch {
	case errors.Is(err, errNotRegistered):
		st, err = e.register(ctx)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case e.cfg.Token != "":
		e.log.Info("already registered; the token is not needed and was not used", "state_dir", e.cfg.StateDir, "name", st.Self.Name)
	}
	if err := wire.CheckRoutes(e.cfg.Routes(), st.routes()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoutes, err)
	}
	e.state, e.saved = st, st
	return e, nil
}

func (e *Engine) progress(msg string) {
	if e.opts.Progress != nil {
		e.opts.Progress(msg)
	}
}

// Self is this node's registration.
func (e *Engine) Self() wire.Node { return e.state.Self }

// setSelf applies this node's own record from the coordinator: its tags,
// which may make it a relay or stop it being one.
func (e *Engine) setSelf(n wire.Node) {
	e.recordMu.Lock()
	e.record = n
	e.recordMu.Unlock()
	e.relayFeed.setSelf(n)
	if e.gateway != nil {
		e.gateway.Wake()
	}
	if e.dns != nil {
		e.dns.table.Set(n)
	}
}

// currentName is this node's name as the coordinator last sent it (the
// administrator may rename it), its registered one before.
func (e *Engine) currentName() string {
	e.recordMu.Lock()
	defer e.recordMu.Unlock()
	if e.record.Name == "" {
		return e.state.Self.Name
	}
	return e.record.Name
}

// selfRecord is this node's record as the coordinator last sent it.
func (e *Engine) selfRecord() wire.Node {
	e.recordMu.Lock()
	defer e.recordMu.Unlock()
	n := e.record
	n.Tags = slices.Clone(n.Tags)
	return n
}

// PublicKey is this node's key.
func (e *Engine) PublicKey() crypto.PublicKey { return e.pub }

// listenRelay opens the sockets of the relay this node serves
// (relay.ListenUDP), marked as the node's own like every underlay socket,
// so its frames never follow routes into the overlay (an exit node's).
func listenRelay(addr string) ([]net.PacketConn, error) {
	conns, err := relay.ListenUDP("udp", addr, 0)
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		err := fmt.Errorf("relay socket %s: no file descriptor to mark", c.LocalAddr())
		if sc, ok := c.(syscall.Conn); ok {
			var raw syscall.RawConn
			if raw, err = sc.SyscallConn(); err == nil {
				err = underlay.Control("", "", raw)
			}
		}
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
	}
	return conns, nil
}
