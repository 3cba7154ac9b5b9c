// Package bench holds meshnode's cross-package benchmarks: the data plane
// (wireguard-go over plain StdNetBind; over meshnode's Bind with its TUN
// guard and packet filter, with no access policy, with a 100-rule policy
// at both ends, and while another peer's path is smaller; and over the
// Bind through the relay), measured side by side in one run. Figures and
// the command that made them are in RESULTS.md.
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/filter"
	"github.com/meshnode/meshnode/node/pmtu"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/relay"
)

// router gives each peer one fixed route.
type router struct {
	to    map[crypto.PublicKey]bind.Route
	from  map[netip.AddrPort]crypto.PublicKey
	relay netip.AddrPort
}

func (r *router) RouteTo(k crypto.PublicKey) bind.Route { return r.to[k] }
func (r *router) PeerAt(a netip.AddrPort) (crypto.PublicKey, bool) {
	k, ok := r.from[a]
	return k, ok
}
func (r *router) IsPeer(k crypto.PublicKey) bool { _, ok := r.to[k]; return ok }
func (r *router) RelayAt(a netip.AddrPort) bool  { return a == r.relay }

// handler passes relay control frames to the node's relays.
type handler struct{ relays *relayclient.Relays }

func (h *handler) handlers() bind.Handlers {
	return bind.Handlers{
		STUN:         func([]byte, netip.AddrPort) {},
		Disco:        func([]byte, netip.AddrPort, int) {},
		RelayedDisco: func([]byte, crypto.PublicKey) {},
		RelayControl: func(p []byte, f netip.AddrPort) { h.relays.HandleControl(p, f) },
	}
}

// everyone lets every registered key relay to every other.
type everyone struct{}

func (everyone) Known(crypto.PublicKey) bool         { return true }
func (everyone) ArePeers(a, b crypto.PublicKey) bool { return a != b }

type node struct {
	priv  crypto.PrivateKey
	tun   *tuntest.ChannelTUN
	dev   *device.Device
	bind  *bind.Bind
	route *router
	port  uint16
}

func loopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

func newNode(b *testing.B, wrapped bool, h *handler, mtus *pmtu.Table, policy *filter.Filter) *node {
	priv, err := crypto.NewPrivateKey()
	if err != nil {
		b.Fatal(err)
	}
	n := &node{priv: priv, tun: tuntest.NewChannelTUN(), route: &router{to: map[crypto.PublicKey]bind.Route{}, from: map[netip.AddrPort]crypto.PublicKey{}}}
	var cb conn.Bind = conn.NewStdNetBind()
	if wrapped {
		// As the node runs it: StdNetBind in bind.StdNet, whose sends are
		// StdNetBind's own (it adds only low-TTL sends beside them).
		n.bind = bind.New(bind.NewStdNet(), nil)
		n.bind.Attach(n.route, h.handlers())
		cb = n.bind
	}
	var dev tun.Device = n.tun.TUN()
	if wrapped {
		// As the node wraps its TUN: the filter around the MTU guard.
		dev = filter.NewTUN(pmtu.NewGuard(dev, mtus), policy, true)
	}
	n.dev = device.NewDevice(dev, cb, device.NewLogger(device.LogLevelSilent, ""))
	if err := n.dev.IpcSet("private_key=" + priv.Hex() + "\nlisten_port=0\n"); err != nil {
		b.Fatal(err)
	}
	if err := n.dev.Up(); err != nil {
		b.Fatal(err)
	}
	dump, _ := n.dev.IpcGet()
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, _ := strconv.Atoi(v)
			n.port = uint16(p)
		}
	}
	b.Cleanup(n.dev.Close)
	return n
}

func (n *node) peer(b *testing.B, p *node, allowed, endpoint string) {
	cfg := fmt.Sprintf("public_key=%s\nallowed_ip=%s\nendpoint=%s\n", p.priv.Public().Hex(), allowed, endpoint)
	if err := n.dev.IpcSet(cfg); err != nil {
		b.Fatal(err)
	}
}

// startRelay runs a relay on loopback and binds both nodes to it.
func startRelay(b *testing.B, x, y *node, hx, hy *handler) netip.AddrPort {
	coord, err := crypto.NewPrivateKey()
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := relay.New(relay.Options{Key: coord, Auth: everyone{}, Log: log, Rate: 1e12, Burst: 1 << 30})
	// As a relay listens: a socket per CPU, with large buffers.
	conns, err := relay.ListenUDP("udp4", loopback(0).String(), 0)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		cancel()
		for _, pc := range conns {
			pc.Close()
		}
	})
	go srv.ServeUDP(ctx, conns, nil)
	addr := conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
	for _, side := range []struct {
		n *node
		h *handler
	}{{x, hx}, {y, hy}} {
		bound := make(chan struct{}, 1)
		rs := relayclient.New(relayclient.Options{
			Priv:    side.n.priv,
			Sockets: side.n.bind,
			Log:     log,
			OnRoute: func(r bind.Route) {
				if r != nil {
					bound <- struct{}{}
				}
			},
		})
		side.h.relays = rs
		rs.SetCandidates(relayclient.Candidate{Key: coord.Public(), Addr: addr.String()}, nil)
		go rs.Run(ctx)
		select {
		case <-bound:
		case <-time.After(10 * time.Second):
			b.Fatal("relay never bound")
		}
	}
	return addr
}

// setup builds two devices: over plain StdNetBinds, over meshnode's Bind
// directly, or over meshnode's Bind through a UDP relay.
func setup(b *testing.B, mode string) (x, y *node) {
	if mode == "wireguard-go-StdNetBind" {
		x, y = newNode(b, false, nil, nil, nil), newNode(b, false, nil, nil, nil)
		x.peer(b, y, "10.0.0.2/32", loopback(y.port).String())
		y.peer(b, x, "10.0.0.1/32", loopback(x.port).String())
		return x, y
	}
	hx, hy := &handler{}, &handler{}
	x, y = newNode(b, true, hx, mtuTable(mode), accessPolicy(b, mode)), newNode(b, true, hy, mtuTable(mode), accessPolicy(b, mode))
	kx, ky := x.priv.Public(), y.priv.Public()
	x.route.to[ky], x.route.from[loopback(y.port)] = x.bind.Direct(loopback(y.port), 0), ky
	y.route.to[kx], y.route.from[loopback(x.port)] = y.bind.Direct(loopback(x.port), 0), kx
	if mode == "meshnode-Bind-UDP-relay" {
		r := startRelay(b, x, y, hx, hy)
		x.route.to[ky] = x.bind.UDPRelay(r)
		y.route.to[kx] = y.bind.UDPRelay(r)
		x.route.relay, y.route.relay = r, r
	}
	x.peer(b, y, "10.0.0.2/32", ky.Hex())
	y.peer(b, x, "10.0.0.1/32", kx.Hex())
	return x, y
}

// mtuTable is the path MTUs a node's guard sees: every path full-size, or
// (guarded mode) another peer's path smaller, so the guard looks up every
// packet's destination.
func mtuTable(mode string) *pmtu.Table {
	t := pmtu.NewTable(1420)
	if mode == "meshnode-Bind-direct-guarded" {
		other := crypto.PublicKey{9}
		t.SetPeer(other, []netip.Addr{netip.MustParseAddr("10.0.0.9")})
		t.SetMTU(other, 1328)
	}
	return t
}

// accessPolicy is a node's packet filter: no policy, or (filter mode) 100
// rules at both ends, of which only the last allows the benchmark's
// packets (UDP between 10.0.0.1 and 10.0.0.2), so the first packet's
// check walks them all; the flow is tracked from then on.
func accessPolicy(b *testing.B, mode string) *filter.Filter {
	f := filter.New(filter.Options{})
	if mode != "meshnode-Bind-direct-filter-100-rules" {
		return f
	}
	p := &wire.Filter{Version: 1}
	for i := range 99 {
		p.Rules = append(p.Rules, wire.FilterRule{
			Rule:  fmt.Sprintf("rule %d", i),
			Src:   []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)},
			Dst:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
			Proto: wire.ProtoTCP,
			Ports: []wire.PortRange{{First: 22, Last: 22}, {First: uint16(1000 + i), Last: uint16(1000 + i)}},
		})
	}
	p.Rules = append(p.Rules, wire.FilterRule{Rule: "bench", Src: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Proto: wire.ProtoUDP})
	if err := f.Set(p); err != nil {
		b.Fatal(err)
	}
	return f
}

// packet is a UDP packet from 10.0.0.1 to 10.0.0.2: what wireguard-go
// needs to route it (version, length and addresses; it checks no checksum)
// and the filter to track it (protocol, a UDP header).
func packet(size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[8], p[9] = 64, 17
	copy(p[12:16], []byte{10, 0, 0, 1})
	copy(p[16:20], []byte{10, 0, 0, 2})
	return p
}

// window bounds packets in flight, like a transport's congestion window:
// the benchmark measures sustainable goodput, not how fast a flood
// overruns socket buffers.
const window = 256

// lossTimeout declares the packets in flight lost when nothing arrives for
// this long, so a lost packet can't stall the window.
const lossTimeout = 200 * time.Millisecond

// BenchmarkDataPlane pushes 1400-byte packets through two wireguard-go
// devices on loopback and reports goodput and loss for each data path, and
// the CPU time the process spent per packet (both devices, and the relay):
// on a machine whose cores other work shares, the goodput swings with that
// work, the CPU time much less, and with both ends and the relay on the
// same cores the goodput of two paths goes as the inverse of their CPU
// time.
func BenchmarkDataPlane(b *testing.B) {
	for _, mode := range []string{"wireguard-go-StdNetBind", "meshnode-Bind-direct", "meshnode-Bind-direct-filter-100-rules", "meshnode-Bind-direct-guarded", "meshnode-Bind-UDP-relay"} {
		b.Run(mode, func(b *testing.B) {
			x, y := setup(b, mode)
			pkt := packet(1400)
			x.tun.Outbound <- pkt // the handshake, before timing
			<-y.tun.Inbound
			b.SetBytes(int64(len(pkt)))
			inflight := make(chan struct{}, window)
			stop := make(chan struct{})
			defer close(stop)
			b.ResetTimer()
			go func() {
				for range b.N {
					select {
					case inflight <- struct{}{}:
					case <-stop:
						return
					}
					x.tun.Outbound <- pkt
				}
			}()
			got, lost, start, cpu := 0, 0, time.Now(), cpuTime(b)
			for got+lost < b.N {
				select {
				case <-y.tun.Inbound:
					got++
					<-inflight
				case <-time.After(lossTimeout):
					for n := len(inflight); n > 0; n-- {
						<-inflight
						lost++
					}
				}
			}
			elapsed, used := time.Since(start), cpuTime(b)-cpu
			b.StopTimer()
			b.ReportMetric(float64(got*len(pkt)*8)/elapsed.Seconds()/1e6, "Mbit/s")
			b.ReportMetric(100*float64(lost)/float64(b.N), "%loss")
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
