package bind

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/meshnode/meshnode/crypto"
)

// staticRouter routes each peer to one fixed address.
type staticRouter struct {
	to   map[crypto.PublicKey]netip.AddrPort
	from map[netip.AddrPort]crypto.PublicKey
}

func (r staticRouter) RouteTo(k crypto.PublicKey) (Route, bool) {
	a, ok := r.to[k]
	return Route{Addr: a}, ok
}

func (r staticRouter) PeerAt(a netip.AddrPort) (crypto.PublicKey, bool) {
	k, ok := r.from[a]
	return k, ok
}

func (r staticRouter) IsPeer(k crypto.PublicKey) bool { _, ok := r.to[k]; return ok }

type nopHandler struct{}

func (nopHandler) HandleSTUN([]byte, netip.AddrPort)           {}
func (nopHandler) HandleDisco([]byte, netip.AddrPort, int)     {}
func (nopHandler) HandleRelayControl([]byte, netip.AddrPort)   {}
func (nopHandler) HandleRelayedDisco([]byte, crypto.PublicKey) {}

// benchPacket is an IPv4 packet from 10.0.0.1 to 10.0.0.2 of size bytes:
// what wireguard-go needs to route it (it checks version, length and
// addresses, not checksums).
func benchPacket(size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[8], p[9] = 64, 17
	copy(p[12:16], []byte{10, 0, 0, 1})
	copy(p[16:20], []byte{10, 0, 0, 2})
	return p
}

type wgNode struct {
	priv crypto.PrivateKey
	tun  *tuntest.ChannelTUN
	dev  *device.Device
	port uint16
}

func startNode(tb testing.TB, b conn.Bind) *wgNode {
	tb.Helper()
	priv, err := crypto.NewPrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	n := &wgNode{priv: priv, tun: tuntest.NewChannelTUN()}
	n.dev = device.NewDevice(n.tun.TUN(), b, device.NewLogger(device.LogLevelSilent, ""))
	if err := n.dev.IpcSet("private_key=" + priv.Hex() + "\nlisten_port=0\n"); err != nil {
		tb.Fatal(err)
	}
	if err := n.dev.Up(); err != nil {
		tb.Fatal(err)
	}
	dump, _ := n.dev.IpcGet()
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, _ := strconv.Atoi(v)
			n.port = uint16(p)
		}
	}
	tb.Cleanup(n.dev.Close)
	return n
}

func peerWith(tb testing.TB, n, peer *wgNode, allowed, endpoint string) {
	tb.Helper()
	cfg := fmt.Sprintf("public_key=%s\nallowed_ip=%s\nendpoint=%s\n", peer.priv.Public().Hex(), allowed, endpoint)
	if err := n.dev.IpcSet(cfg); err != nil {
		tb.Fatal(err)
	}
}

// pair builds two wireguard-go devices on loopback, either over plain
// StdNetBinds or over meshnode's Bind wrapping them.
func pair(tb testing.TB, wrapped bool) (a, b *wgNode) {
	loop := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) }
	if !wrapped {
		a, b = startNode(tb, conn.NewStdNetBind()), startNode(tb, conn.NewStdNetBind())
		peerWith(tb, a, b, "10.0.0.2/32", loop(b.port).String())
		peerWith(tb, b, a, "10.0.0.1/32", loop(a.port).String())
		return a, b
	}
	ra := staticRouter{to: map[crypto.PublicKey]netip.AddrPort{}, from: map[netip.AddrPort]crypto.PublicKey{}}
	rb := staticRouter{to: map[crypto.PublicKey]netip.AddrPort{}, from: map[netip.AddrPort]crypto.PublicKey{}}
	a = startNode(tb, New(conn.NewStdNetBind(), ra, nopHandler{}, nil))
	b = startNode(tb, New(conn.NewStdNetBind(), rb, nopHandler{}, nil))
	ka, kb := a.priv.Public(), b.priv.Public()
	ra.to[kb], ra.from[loop(b.port)] = loop(b.port), kb
	rb.to[ka], rb.from[loop(a.port)] = loop(a.port), ka
	peerWith(tb, a, b, "10.0.0.2/32", kb.Hex())
	peerWith(tb, b, a, "10.0.0.1/32", ka.Hex())
	return a, b
}

// idleLoss ends a run when nothing arrives for this long: UDP on a loaded
// loopback may drop packets, and the benchmark reports loss, not a hang.
const idleLoss = 2 * time.Second

// BenchmarkThroughput pushes 1400-byte packets through two wireguard-go
// devices on loopback and reports goodput, with plain StdNetBind and with
// meshnode's Bind wrapping it, side by side.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name    string
		wrapped bool
	}{{"wireguard-go-StdNetBind", false}, {"meshnode-Bind", true}} {
		b.Run(tc.name, func(b *testing.B) {
			x, y := pair(b, tc.wrapped)
			pkt := benchPacket(1400)
			// Warm up: complete the handshake before timing.
			x.tun.Outbound <- pkt
			<-y.tun.Inbound
			b.SetBytes(int64(len(pkt)))
			b.ResetTimer()
			go func() {
				for range b.N {
					x.tun.Outbound <- pkt
				}
			}()
			got, start, last := 0, time.Now(), time.Now()
		recv:
			for got < b.N {
				select {
				case <-y.tun.Inbound:
					got++
					last = time.Now()
				case <-time.After(idleLoss):
					break recv
				}
			}
			b.StopTimer()
			// Goodput up to the last packet received, so a lossy run's idle
			// wait doesn't count as transfer time.
			b.ReportMetric(float64(got*len(pkt)*8)/last.Sub(start).Seconds()/1e6, "Mbit/s")
			b.ReportMetric(100*float64(b.N-got)/float64(b.N), "%loss")
		})
	}
}
