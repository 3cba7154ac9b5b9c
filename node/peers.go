package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/path"
)

// OnWelcome takes the full peer map after each (re)connect: peers missing
// from it are removed, the rest upserted, and this node's candidates resent
// (a restarted coordinator may have lost them).
func (e *Engine) OnWelcome(msg wire.StreamMsg) {
	e.mu.Lock()
	keep := make(map[crypto.PublicKey]bool, len(msg.Peers))
	for _, p := range msg.Peers {
		keep[p.PublicKey] = true
	}
	var gone []crypto.PublicKey
	for k := range e.peers {
		if !keep[k] {
			gone = append(gone, k)
		}
	}
	saveSTUN := len(msg.STUN) > 0 && !slices.Equal(msg.STUN, e.state.STUN)
	if len(msg.STUN) > 0 {
		e.stunServers = msg.STUN
		e.state.STUN = msg.STUN
	}
	st := e.state
	e.mu.Unlock()
	if saveSTUN {
		if err := saveState(e.cfg.StateDir, st); err != nil {
			e.log.Warn("saving the coordinator's STUN servers", "err", err)
		}
	}
	e.mu.Lock()
	e.coordRelay = msg.Relay
	e.mu.Unlock()
	for _, k := range gone {
		e.removePeer(k)
	}
	for _, p := range msg.Peers {
		e.upsertPeer(p)
	}
	e.chooseRelay()
	e.log.Info("peer map received", "peers", len(msg.Peers))
	e.progress(fmt.Sprintf("connected to the coordinator; %d peers", len(msg.Peers)))
	e.Kick()
	e.sendEndpoints()
}

// OnPeers applies a delta.
func (e *Engine) OnPeers(msg wire.StreamMsg) {
	for _, k := range msg.Remove {
		e.removePeer(k)
	}
	for _, p := range msg.Upsert {
		e.upsertPeer(p)
	}
	e.chooseRelay()
}

// OnPunch starts punching on the coordinator's cue.
func (e *Engine) OnPunch(msg wire.StreamMsg) {
	if msg.Peer == nil {
		return
	}
	e.log.Debug("rendezvous cue", "peer", msg.Peer.Short(), "endpoints", len(msg.Endpoints))
	e.mgr.Punch(*msg.Peer, msg.Endpoints, msg.NAT)
}

// OnDisconnect keeps every path working: only the coordinator is gone.
func (e *Engine) OnDisconnect(err error) {
	e.log.Debug("coordinator stream dropped; existing paths keep working", "err", err)
}

func (e *Engine) upsertPeer(n wire.Node) {
	if n.PublicKey == e.priv.Public() {
		return
	}
	e.mu.Lock()
	_, known := e.peers[n.PublicKey]
	e.peers[n.PublicKey] = n
	e.mu.Unlock()
	if err := e.dev.IpcSet(peerConfig(n, !known)); err != nil {
		e.log.Error("configure WireGuard peer", "peer", n.Name, "err", err)
		return
	}
	e.mgr.UpsertPeer(path.PeerInfo{Key: n.PublicKey, Name: n.Name, Online: n.Online, Endpoints: n.Endpoints, NAT: n.NAT})
	if !known {
		e.log.Info("peer added", "peer", n.Name, "addresses", n.Addresses, "online", n.Online)
	}
}

func (e *Engine) removePeer(k crypto.PublicKey) {
	e.mu.Lock()
	n, ok := e.peers[k]
	delete(e.peers, k)
	e.mu.Unlock()
	if !ok {
		return
	}
	if err := e.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", k.Hex())); err != nil {
		e.log.Error("remove WireGuard peer", "peer", n.Name, "err", err)
	}
	e.mgr.RemovePeer(k)
	e.bind.Forget(k)
	e.log.Info("peer removed", "peer", n.Name)
}

// peerConfig is the UAPI text for a peer: its overlay addresses as allowed
// IPs and, for a new peer, its key as the endpoint the Bind resolves.
func peerConfig(n wire.Node, create bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\n", n.PublicKey.Hex())
	for _, a := range n.Addresses {
		fmt.Fprintf(&b, "allowed_ip=%s\n", netip.PrefixFrom(a, a.BitLen()))
	}
	if create {
		fmt.Fprintf(&b, "endpoint=%s\n", n.PublicKey.Hex())
	}
	return b.String()
}

// rendezvous asks the coordinator to cue both sides (path.Hooks).
func (e *Engine) rendezvous(peer crypto.PublicKey) {
	if e.stream == nil {
		return
	}
	if err := e.stream.Send(context.Background(), wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &peer}); err != nil {
		e.log.Debug("rendezvous request not sent", "peer", peer.Short(), "err", err)
	}
}

// wgLogger routes wireguard-go's logs to slog.
func wgLogger(log *slog.Logger) *device.Logger {
	l := log.With("component", "wireguard")
	return &device.Logger{
		Verbosef: func(format string, args ...any) { l.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { l.Error(fmt.Sprintf(format, args...)) },
	}
}
