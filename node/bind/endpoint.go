package bind

import (
	"net/netip"

	"github.com/meshnode/meshnode/crypto"
)

// PeerEndpoint is the conn.Endpoint wireguard-go holds for a peer: the peer's
// identity, not an address. The Bind resolves it to a path at each send.
type PeerEndpoint struct {
	Key crypto.PublicKey
	hs  handshake
}

// ClearSrc is a no-op: the path manager owns source selection.
func (*PeerEndpoint) ClearSrc() {}

// SrcToString is empty: there is no sticky source.
func (*PeerEndpoint) SrcToString() string { return "" }

// DstToString is the peer key in hex, the form ParseEndpoint accepts.
func (e *PeerEndpoint) DstToString() string { return e.Key.Hex() }

// DstToBytes feeds wireguard-go's cookie MAC (mac2, WireGuard §5.4.7): the
// key identifies the sender as well as an address would.
func (e *PeerEndpoint) DstToBytes() []byte { return e.Key[:] }

// DstIP is unset: the address changes with the path.
func (*PeerEndpoint) DstIP() netip.Addr { return netip.Addr{} }

// SrcIP is unset.
func (*PeerEndpoint) SrcIP() netip.Addr { return netip.Addr{} }
