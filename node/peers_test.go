package node

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/pmtu"
	"github.com/meshnode/meshnode/node/registry"
	"github.com/meshnode/meshnode/node/routes"
)

// injected is a consumer that refuses changes while armed: a failure
// injected between WireGuard and the path manager.
type injected struct{ armed bool }

var errRefused = errors.New("refused by the test")

func (i *injected) Upsert(wire.Node, *wire.Node) error { return i.err() }
func (i *injected) Remove(wire.Node) error             { return i.err() }

func (i *injected) err() error {
	if i.armed {
		return errRefused
	}
	return nil
}

// A peer change that fails half-way, with the node's real consumers on
// either side of the failure, leaves WireGuard's peer table and the path
// manager agreeing with the registry: the change happened nowhere.
// peerHarness is a WireGuard device over a loopback Bind with a path
// manager, and the node's consumers of peer changes around them.
type peerHarness struct {
	self      crypto.PrivateKey
	dev       *device.Device
	mgr       *path.Manager
	consumers []registry.Named
}

func newPeerHarness(t *testing.T, table *routes.Table) *peerHarness {
	t.Helper()
	self, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	b := bind.New(bind.NewConnBind(func(port uint16) (bind.UDPConn, error) {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	}), nil)
	mgr := path.New(crypto.NewSealer(self), b, path.DefaultTiming(time.Second), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Attach(mgr, bind.Handlers{
		STUN:         func([]byte, netip.AddrPort) {},
		Disco:        mgr.HandleDisco,
		RelayedDisco: mgr.HandleRelayedDisco,
		RelayControl: func([]byte, netip.AddrPort) {},
	})
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), b, device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	if err := dev.IpcSet("private_key=" + self.Hex() + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	return &peerHarness{self: self, dev: dev, mgr: mgr, consumers: peerConsumers(dev, b, pmtu.NewTable(1420), mgr, table)}
}

// allowed is WireGuard's allowed IPs of the peer key, comma-separated.
func (h *peerHarness) allowed(t *testing.T, key crypto.PublicKey) string {
	t.Helper()
	dump, err := h.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	in := false
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "public_key="); ok {
			in = v == key.Hex()
		}
		if v, ok := strings.CutPrefix(line, "allowed_ip="); ok && in {
			ips = append(ips, v)
		}
	}
	return strings.Join(ips, ",")
}

// keyOf is a peer's key made from one byte: any 32 bytes are a Curve25519
// private key (X25519 clears the low bits of the first byte, so b goes in
// the second).
func keyOf(b byte) crypto.PublicKey { return crypto.PrivateKey{1: b}.Public() }

func TestPeerChangeFailingHalfWayLeavesConsumersAgreeing(t *testing.T) {
	h := newPeerHarness(t, routes.NewTable(nil, nil, routes.Prefs{}, nil))
	mgr, consumers := h.mgr, h.consumers
	fault := &injected{armed: true}
	reg := registry.New(h.self.Public(), nil, consumers[0], consumers[1], registry.Named{Name: "injected", Consumer: fault}, consumers[2])
	key := keyOf(1)
	wgAllowed := func() string { return h.allowed(t, key) }
	agree := func(want string) {
		t.Helper()
		rec, has := reg.Get(key)
		switch {
		case want == "" && (has || mgr.IsPeer(key) || wgAllowed() != ""):
			t.Errorf("peer should be nowhere: registry %v, path %v, WireGuard %q", has, mgr.IsPeer(key), wgAllowed())
		case want != "" && (!has || !mgr.IsPeer(key) || wgAllowed() != want || rec.Addresses[0].String()+"/32" != want):
			t.Errorf("peer should be at %s everywhere: registry %v %v, path %v, WireGuard %q", want, has, rec.Addresses, mgr.IsPeer(key), wgAllowed())
		}
	}
	n := wire.Node{Name: "peer", PublicKey: key, Online: true, Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.9")}}

	// An addition that fails half-way happens nowhere.
	if err := reg.Upsert(n); !errors.Is(err, errRefused) {
		t.Fatalf("upsert: %v, want the injected failure", err)
	}
	agree("")

	// An update that fails half-way leaves the old record everywhere.
	fault.armed = false
	if err := reg.Upsert(n); err != nil {
		t.Fatal(err)
	}
	agree("100.88.0.9/32")
	fault.armed = true
	moved := n
	moved.Addresses = []netip.Addr{netip.MustParseAddr("100.88.0.77")}
	if err := reg.Upsert(moved); !errors.Is(err, errRefused) {
		t.Fatalf("update: %v, want the injected failure", err)
	}
	agree("100.88.0.9/32")

	// So does a removal.
	if err := reg.Remove(key); !errors.Is(err, errRefused) {
		t.Fatalf("remove: %v, want the injected failure", err)
	}
	agree("100.88.0.9/32")
	fault.armed = false
	if err := reg.Remove(key); err != nil {
		t.Fatal(err)
	}
	agree("")
}

// A peer's subnet routes go into its allowed IPs while it is their
// primary; the exit routes only while its user chose it as the exit node,
// and they move with that choice.
func TestRoutesInAllowedIPs(t *testing.T) {
	table := routes.NewTable(nil, nil, routes.Prefs{}, nil)
	h := newPeerHarness(t, table)
	reg := registry.New(h.self.Public(), nil, h.consumers...)
	exit := []netip.Prefix{wire.ExitRouteV4, wire.ExitRouteV6}
	lan := netip.MustParsePrefix("192.168.10.0/24")
	office := wire.Node{Name: "office", PublicKey: keyOf(2), Online: true, Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")},
		Routes: append([]netip.Prefix{lan}, exit...), PrimaryRoutes: []netip.Prefix{lan}}
	cloud := wire.Node{Name: "cloud", PublicKey: keyOf(3), Online: true, Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.3")}, Routes: exit}
	for _, n := range []wire.Node{office, cloud} {
		if err := reg.Upsert(n); err != nil {
			t.Fatal(err)
		}
	}
	check := func(stage, wantOffice, wantCloud string) {
		t.Helper()
		if got := h.allowed(t, office.PublicKey); got != wantOffice {
			t.Errorf("%s: office allowed %s, want %s", stage, got, wantOffice)
		}
		if got := h.allowed(t, cloud.PublicKey); got != wantCloud {
			t.Errorf("%s: cloud allowed %s, want %s", stage, got, wantCloud)
		}
	}
	check("no exit node", "100.88.0.2/32,192.168.10.0/24", "100.88.0.3/32")

	for _, choice := range []struct{ exit, office, cloud string }{
		{"office", "100.88.0.2/32,192.168.10.0/24,0.0.0.0/0,::/0", "100.88.0.3/32"},
		{"cloud", "100.88.0.2/32,192.168.10.0/24", "100.88.0.3/32,0.0.0.0/0,::/0"},
		{"", "100.88.0.2/32,192.168.10.0/24", "100.88.0.3/32"},
	} {
		old, err := table.SetPrefs(routes.Prefs{ExitNode: choice.exit})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{old.ExitNode, choice.exit} {
			for _, n := range []wire.Node{office, cloud} {
				if n.Name == name {
					if err := reg.Reapply(n.PublicKey); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		check("exit node "+choice.exit, choice.office, choice.cloud)
	}

	// The office loses its approval: its LAN leaves its allowed IPs.
	office.Routes, office.PrimaryRoutes = nil, nil
	if err := reg.Upsert(office); err != nil {
		t.Fatal(err)
	}
	check("rejected", "100.88.0.2/32", "100.88.0.3/32")
}
