package meshlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/relayfault"
	"github.com/meshnode/meshnode/node"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/meshdns"
	"github.com/meshnode/meshnode/node/osdns"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/tun"
)

// NodeOptions tune one node.
type NodeOptions struct {
	// Timing overrides the path manager's timers.
	Timing *path.Timing
	// Keepalive overrides the config's keepalive.
	Keepalive time.Duration
	// Relay makes the node serve as the mesh's relay on its first address,
	// port RelayPort; it joins with the relay token, which designates it.
	Relay bool
	// RelayTiming overrides the relay client's timers.
	RelayTiming *relayclient.Timing
	// AdvertiseRoutes are the node's advertise_routes, and
	// AdvertiseExitNode its advertise_exit_node; ExitNode is its exit_node.
	AdvertiseRoutes   []string
	AdvertiseExitNode bool
	ExitNode          string
	// Behind are addresses the node's netstack answers at besides its
	// overlay ones: hosts on a LAN it routes, or on the internet beyond
	// an exit node, which peers reach only through it.
	Behind []netip.Addr
	// UnfilteredSends makes the node send what its access policy denies,
	// as a modified node would: its peers must drop it.
	UnfilteredSends bool
	// MetricsListen is the node's metrics_listen (on the host's real
	// loopback: the emulator carries only the mesh's UDP).
	MetricsListen string
	// NoPeerMapCache turns peer_map_cache off.
	NoPeerMapCache bool
	// Token joins the node with this token instead of Mesh.Token: one
	// of another coordinator (Coordinator.Token).
	Token string
}

// RelayPort is where relay nodes serve in the lab.
const RelayPort = 3479

// Node is one running node of the mesh.
type Node struct {
	Name   string
	Host   *natlab.Host
	Engine *node.Engine
	// Net dials and listens on the overlay through the node's netstack.
	Net *netstack.Net
	// RelayFault is the socket of the relay a Relay node serves: tests
	// make the relay drop what it should carry (relayfault.Conn.Set).
	RelayFault *relayfault.Conn

	cancel context.CancelFunc
	done   chan error
	// opts and stateDir start it again (Mesh.Restart).
	opts     NodeOptions
	stateDir string
}

// listenPort is every lab node's UDP port, as in production: each emulated
// host has its own port space.
const listenPort = config.DefaultListenPort

// AddNode starts a node named name on host and waits until it is up.
func (m *Mesh) AddNode(name string, host *natlab.Host, opts NodeOptions) *Node {
	m.t.Helper()
	return m.startNode(name, host, opts, m.t.TempDir())
}

// Restart stops n and starts it again with its state, as after a reboot or
// an upgrade: same key, same registration, same host and port. It returns
// the new node.
func (m *Mesh) Restart(n *Node) *Node {
	m.t.Helper()
	return m.RestartWith(n, n.opts)
}

// RestartWith is Restart with other options.
func (m *Mesh) RestartWith(n *Node, opts NodeOptions) *Node {
	m.t.Helper()
	if err := n.Stop(); err != nil {
		m.t.Fatalf("stop %s: %v", n.Name, err)
	}
	return m.startNode(n.Name, n.Host, opts, n.stateDir)
}

// startNode starts a node with its state in stateDir and waits until it is
// up.
func (m *Mesh) startNode(name string, host *natlab.Host, opts NodeOptions, stateDir string) *Node {
	m.t.Helper()
	cfg := config.DefaultNode()
	cfg.Name = name
	cfg.Token = m.Token
	if opts.Token != "" {
		cfg.Token = opts.Token
	}
	cfg.StateDir = stateDir
	cfg.ListenPort = listenPort
	// Never ask the host's real gateway for anything from a test, and keep
	// TCP off: the emulator carries UDP only, and a TCP punch over the
	// real loopback would bypass its NATs.
	cfg.PortMapping = false
	cfg.TCPPunch = false
	sockDir, err := os.MkdirTemp("", "mnsock")
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { os.RemoveAll(sockDir) })
	cfg.Socket = filepath.Join(sockDir, "s")
	if opts.Keepalive != 0 {
		cfg.Keepalive = opts.Keepalive
	}
	cfg.AdvertiseRoutes, cfg.AdvertiseExitNode, cfg.ExitNode = opts.AdvertiseRoutes, opts.AdvertiseExitNode, opts.ExitNode
	cfg.MetricsListen = opts.MetricsListen
	cfg.PeerMapCache = !opts.NoPeerMapCache
	if opts.Token != "" {
		cfg.Token = opts.Token
	}
	if opts.Relay {
		cfg.Token = m.RelayToken
		cfg.RelayListen = netip.AddrPortFrom(host.IPs()[0], RelayPort).String()
		cfg.RelayPublic = cfg.RelayListen
	}
	n := &Node{Name: name, Host: host, done: make(chan error, 1), opts: opts, stateDir: stateDir}
	// An empty resolv.conf: the resolver has no upstream, and never
	// forwards to the host's.
	resolvConf := filepath.Join(cfg.StateDir, "resolv.conf")
	if err := os.WriteFile(resolvConf, nil, 0o644); err != nil {
		m.t.Fatal(err)
	}
	ready := make(chan struct{})
	eopts := node.Options{
		Config:      cfg,
		Log:         m.log.With("node", name),
		Timing:      opts.Timing,
		RelayTiming: opts.RelayTiming,
		LocalAddrs:  host.IPs,
		Ready:       ready,
		Bind: bind.NewConnBind(func(port uint16) (bind.UDPConn, error) {
			c, err := host.ListenPacket(netip.AddrPortFrom(netip.Addr{}, port))
			if err != nil {
				return nil, err
			}
			return c, nil
		}),
		RelayListen: func(addr string) ([]net.PacketConn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			c, err := host.ListenPacket(ap)
			if err != nil {
				return nil, err
			}
			n.RelayFault = relayfault.Wrap(c)
			return []net.PacketConn{n.RelayFault}, nil
		},
		AuxListen: func() (bind.UDPConn, error) {
			c, err := host.ListenPacket(netip.AddrPort{})
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		NewTUN: func(addrs []netip.Addr, mtu int) (tun.Device, error) {
			dev, tnet, err := netstack.CreateNetTUN(append(slices.Clone(addrs), opts.Behind...), nil, mtu)
			n.Net = tnet
			return dev, err
		},
		// The resolver listens on the node's netstack, created first.
		DNSListen: &meshdns.Listeners{
			Packet: func(ap netip.AddrPort) (net.PacketConn, error) { return n.Net.ListenUDPAddrPort(ap) },
			Stream: func(ap netip.AddrPort) (net.Listener, error) { return n.Net.ListenTCPAddrPort(ap) },
		},
		DNSPaths: &osdns.Paths{ResolvConf: resolvConf},
	}
	eopts.UnfilteredSends = opts.UnfilteredSends
	eopts.PathReportGap = m.pathReportGap
	ctx, cancel := context.WithCancel(m.ctx)
	n.cancel = cancel
	eng, err := node.New(ctx, eopts)
	if err != nil {
		cancel()
		m.t.Fatalf("node %s: %v", name, err)
	}
	n.Engine = eng
	go func() { n.done <- eng.Run(ctx) }()
	select {
	case <-ready:
	case err := <-n.done:
		cancel()
		m.t.Fatalf("node %s stopped while starting: %v", name, err)
	case <-time.After(startTimeout):
		cancel()
		m.t.Fatalf("node %s not up after %v", name, startTimeout)
	}
	m.mu.Lock()
	m.nodes = append(m.nodes, n)
	m.mu.Unlock()
	// Stopped before its state directory (a TempDir made before it) is
	// removed: a node writes there on the way down (its peer map). The
	// Mesh's own cleanup reports errors of Stop, which returns the same
	// result again.
	m.t.Cleanup(func() { n.Stop() }) //nolint:errcheck // reported by stopNodes
	return n
}

// startTimeout bounds a node's start.
const startTimeout = 30 * time.Second

// Stop stops the node and waits for it to exit.
func (n *Node) Stop() error {
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err // later Stops see the same result
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(startTimeout):
		return fmt.Errorf("node %s did not stop within %v", n.Name, startTimeout)
	}
}

func (m *Mesh) stopNodes() {
	m.mu.Lock()
	nodes := m.nodes
	m.mu.Unlock()
	for _, n := range nodes {
		if err := n.Stop(); err != nil {
			m.t.Errorf("stop %s: %v", n.Name, err)
		}
	}
}

// StateDir is the node's state_dir.
func (n *Node) StateDir() string { return n.stateDir }

// Addr4 is the node's overlay IPv4 address.
func (n *Node) Addr4() netip.Addr {
	for _, a := range n.Engine.Self().Addresses {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// PathTo is the node's current path to peer.
func (n *Node) PathTo(peer *Node) path.PeerPath {
	return n.Engine.PeerPath(peer.Engine.PublicKey())
}
