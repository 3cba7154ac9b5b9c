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
func TestPeerChangeFailingHalfWayLeavesConsumersAgreeing(t *testing.T) {
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
	defer dev.Close()
	if err := dev.IpcSet("private_key=" + self.Hex() + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	consumers := peerConsumers(dev, b, pmtu.NewTable(1420), mgr)
	fault := &injected{armed: true}
	reg := registry.New(self.Public(), nil, consumers[0], consumers[1], registry.Named{Name: "injected", Consumer: fault}, consumers[2])
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := k.Public()
	wgAllowed := func() string {
		dump, err := dev.IpcGet()
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
