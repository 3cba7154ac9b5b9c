package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/pmtu"
	"github.com/meshnode/meshnode/node/registry"
	"github.com/meshnode/meshnode/node/routes"
)

// The registry's consumers, in the order every peer change reaches them:
// WireGuard's peer table first (a peer it refuses gets no path either),
// then the MTU table (it holds a peer before the path manager can report
// its MTU, and ignores a report once it let the peer go), then the path
// manager, then the routing table (which moves OS routes to a peer only
// once WireGuard has it).
func peerConsumers(dev *device.Device, b *bind.Bind, mtus *pmtu.Table, mgr *path.Manager, table *routes.Table) []registry.Named {
	return []registry.Named{
		{Name: "wireguard", Consumer: wgPeers{dev, b, table}},
		{Name: "mtu", Consumer: mtuPeers{mtus}},
		{Name: "path", Consumer: pathPeers{mgr}},
		{Name: "routes", Consumer: table},
	}
}

// wgPeers keeps wireguard-go's peers (over UAPI) and their Bind endpoints;
// the routing table says what each carries beyond its addresses.
type wgPeers struct {
	dev   *device.Device
	bind  *bind.Bind
	table *routes.Table
}

func (w wgPeers) Upsert(n wire.Node, old *wire.Node) error {
	return w.dev.IpcSet(peerConfig(n, old == nil, w.table.AllowedIPs(n)))
}

func (w wgPeers) Remove(n wire.Node) error {
	if err := w.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", n.PublicKey.Hex())); err != nil {
		return err
	}
	w.bind.Forget(n.PublicKey)
	return nil
}

// peerConfig is the UAPI text for a peer: its overlay addresses and the
// routes it carries (WireGuard sends a prefix to the one peer that has it
// among its allowed IPs, and takes packets from a peer only from them) and,
// for a new peer, its key as the endpoint the Bind resolves.
func peerConfig(n wire.Node, create bool, routes []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\n", n.PublicKey.Hex())
	for _, a := range n.Addresses {
		fmt.Fprintf(&b, "allowed_ip=%s\n", netip.PrefixFrom(a, a.BitLen()))
	}
	for _, p := range routes {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	if create {
		fmt.Fprintf(&b, "endpoint=%s\n", n.PublicKey.Hex())
	}
	return b.String()
}

// pathPeers keeps the path manager's peers (and with them its routes,
// address table and the sealer's cache).
type pathPeers struct{ mgr *path.Manager }

func (p pathPeers) Upsert(n wire.Node, _ *wire.Node) error {
	p.mgr.UpsertPeer(path.PeerInfo{Key: n.PublicKey, Name: n.Name, Online: n.Online, Endpoints: n.Endpoints, NAT: n.NAT})
	return nil
}

func (p pathPeers) Remove(n wire.Node) error {
	p.mgr.RemovePeer(n.PublicKey)
	return nil
}

// mtuPeers keeps the MTU table's peers and their overlay addresses.
type mtuPeers struct{ t *pmtu.Table }

func (m mtuPeers) Upsert(n wire.Node, _ *wire.Node) error {
	m.t.SetPeer(n.PublicKey, n.Addresses)
	return nil
}

func (m mtuPeers) Remove(n wire.Node) error {
	m.t.RemovePeer(n.PublicKey)
	return nil
}

// wgLogger routes wireguard-go's logs to slog.
func wgLogger(log *slog.Logger) *device.Logger {
	l := log.With("component", "wireguard")
	return &device.Logger{
		Verbosef: func(format string, args ...any) { l.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { l.Error(fmt.Sprintf(format, args...)) },
	}
}
