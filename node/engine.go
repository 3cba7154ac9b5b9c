// Package node is the meshnode agent: it registers with the coordinator,
// opens the TUN device, runs wireguard-go over the shared-socket Bind, and
// keeps a direct path to every peer that the NATs allow (relay otherwise).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/control"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/node/tcppunch"
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
	// RelayListen opens the socket of the relay this node serves
	// (relay_listen); nil means a UDP socket on that address.
	RelayListen func(addr string) (net.PacketConn, error)
	// LocalAddrs lists LAN candidate addresses; nil means the host's.
	LocalAddrs func() []netip.Addr
	// Timing overrides the path manager's timers (tests scale them down).
	Timing *path.Timing
	// Progress, when set, hears what `up` is waiting for.
	Progress func(msg string)
	// Ready is closed once the node is up (device, socket, coordinator).
	Ready chan<- struct{}
}

// Engine is a running node.
type Engine struct {
	opts  Options
	cfg   config.Node
	log   *slog.Logger
	priv  crypto.PrivateKey
	state State

	tun    tun.Device
	osTUN  bool
	bind   *bind.Bind
	dev    *device.Device
	mgr    *path.Manager
	prober *discovery.Prober
	stream *control.Stream
	relay  *relayclient.Client

	stop context.CancelFunc
	// runCtx and tasks belong to Run: work it starts later (TCP punches)
	// ends with it.
	runCtx context.Context
	tasks  sync.WaitGroup
	// tcp is the TCP hole-punching listener on TCP listen_port, when on.
	tcp *tcppunch.Listener

	mu    sync.Mutex
	peers map[crypto.PublicKey]wire.Node
	disc  discovery.Result
	// portMapped is the gateway's port mapping for our socket, if any.
	portMapped netip.AddrPort
	// coordRelay is the coordinator's UDP relay (host:port) from its welcome.
	coordRelay string
	// stunServers are the coordinator's STUN addresses (host:port), primary
	// first, from its welcome.
	stunServers []string
	// The relays: UDP is preferred, TCP is the fallback where UDP is blocked.
	udpRelay, tcpRelay bind.Route
	udpRelayDownSince  time.Time
	// kick asks the discovery loop to gather now.
	kick chan struct{}
}

// New loads the key and registration from the state directory, registering
// with the token when there is none yet.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.RelayListen == nil {
		opts.RelayListen = func(addr string) (net.PacketConn, error) { return net.ListenPacket("udp", addr) }
	}
	if opts.AuxListen == nil {
		opts.AuxListen = func() (bind.UDPConn, error) { return net.ListenUDP("udp4", nil) }
	}
	e := &Engine{
		opts:              opts,
		cfg:               opts.Config,
		log:               opts.Log,
		peers:             make(map[crypto.PublicKey]wire.Node),
		kick:              make(chan struct{}, 1),
		udpRelayDownSince: time.Now(),
	}
	if err := os.MkdirAll(e.cfg.StateDir, dirMode); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", e.cfg.StateDir, err)
	}
	priv, err := crypto.LoadOrCreatePrivateKey(filepath.Join(e.cfg.StateDir, keyFile))
	if err != nil {
		return nil, err
	}
	e.priv = priv
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
	e.state = st
	e.stunServers = st.STUN
	return e, nil
}

// registerRetry bounds the wait between registration attempts while the
// coordinator is unreachable.
const (
	registerRetryMin = time.Second
	registerRetryMax = 30 * time.Second
)

// ErrNeedToken means the node has never registered and has no token.
var ErrNeedToken = errors.New("this node is not registered yet: pass --token TOKEN (create one on the coordinator with 'meshnode token create')")

func (e *Engine) register(ctx context.Context) (State, error) {
	if e.cfg.Token == "" {
		return State{}, ErrNeedToken
	}
	tok, err := crypto.ParseToken(e.cfg.Token)
	if err != nil {
		return State{}, err
	}
	name := e.cfg.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	hc := control.NewHTTPClient(tok.Pin)
	wait := registerRetryMin
	for {
		e.progress("registering with the coordinator at " + tok.URL)
		resp, err := control.Register(ctx, hc, tok, e.cfg.Token, e.priv.Public(), name)
		if err == nil {
			st := State{
				CoordinatorURL: tok.URL,
				Pin:            tok.Pin,
				CoordinatorKey: resp.CoordinatorKey,
				Self:           resp.Self,
				NetworkV4:      resp.NetworkV4,
				NetworkV6:      resp.NetworkV6,
			}
			if err := saveState(e.cfg.StateDir, st); err != nil {
				return st, err
			}
			e.log.Info("registered", "name", st.Self.Name, "addresses", st.Self.Addresses)
			return st, nil
		}
		if control.IsPermanent(err) {
			return State{}, err
		}
		// Full jitter spreads a fleet's retries after a coordinator outage.
		d := wait/2 + rand.N(wait)
		e.log.Warn("coordinator unreachable; retrying", "url", tok.URL, "err", err, "in", d.Round(time.Millisecond))
		e.progress(fmt.Sprintf("coordinator unreachable (%v); retrying in %v", err, d.Round(time.Second)))
		select {
		case <-ctx.Done():
			return State{}, fmt.Errorf("registering: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(d):
		}
		wait = min(2*wait, registerRetryMax)
	}
}

func (e *Engine) progress(msg string) {
	if e.opts.Progress != nil {
		e.opts.Progress(msg)
	}
}

// Self is this node's registration.
func (e *Engine) Self() wire.Node { return e.state.Self }

// PublicKey is this node's key.
func (e *Engine) PublicKey() crypto.PublicKey { return e.priv.Public() }

// tcpRelayGrace is how long the UDP relay may stay unbound before the TCP
// relay is opened: a UDP relay binds within a round trip where UDP passes.
const tcpRelayGrace = 3 * time.Second

// setRelay records a relay route (or its loss) and gives the path manager
// the best one: UDP when bound, else TCP.
func (e *Engine) setRelay(tcp bool, r bind.Route) {
	e.mu.Lock()
	if tcp {
		e.tcpRelay = r
	} else {
		if r == nil && e.udpRelay != nil {
			e.udpRelayDownSince = time.Now()
		}
		e.udpRelay = r
	}
	best := e.udpRelay
	if best == nil {
		best = e.tcpRelay
	}
	e.mu.Unlock()
	e.mgr.SetRelay(best)
}

// wantTCPRelay reports whether the UDP relay has been unavailable too long.
func (e *Engine) wantTCPRelay() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.udpRelay == nil && time.Since(e.udpRelayDownSince) > tcpRelayGrace
}
