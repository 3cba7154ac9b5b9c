package bind

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Fixed addresses and keys of the demultiplexer fuzz target, so that the
// corpus's relay frames name a peer in every run. The seeds in
// testdata/fuzz/FuzzDemux were built with wire's encoders and pion/stun.
var (
	fuzzPeerAddr  = netip.MustParseAddrPort("198.18.0.5:41820")
	fuzzOtherAddr = netip.MustParseAddrPort("198.18.0.6:41820")
	fuzzRelayAddr = netip.MustParseAddrPort("198.18.0.1:3478")
	fuzzPeer      = crypto.PublicKey{1: 1}
	fuzzRelayed   = crypto.PublicKey{2: 2} // a peer reached only through relays
	fuzzSelf      = crypto.PublicKey{3: 3} // this node: relayed frames naming it are echoes
)

// fuzzSources are the senders a datagram may come from: the peer, the
// peer's address as an IPv4-mapped IPv6 (a dual-stack socket), an address
// no peer was seen at, and the UDP relay in use.
var fuzzSources = []netip.AddrPort{
	fuzzPeerAddr,
	netip.AddrPortFrom(netip.AddrFrom16(fuzzPeerAddr.Addr().As16()), fuzzPeerAddr.Port()),
	fuzzOtherAddr,
	fuzzRelayAddr,
}

// checkingHandlers fail the test when a handler gets a packet that is not
// its kind, and count the calls.
type checkingHandlers struct {
	t     *testing.T
	calls int
}

func (h *checkingHandlers) handlers() Handlers {
	return Handlers{
		STUN: func(pkt []byte, _ netip.AddrPort) {
			h.calls++
			if wire.Classify(pkt) != wire.KindSTUN {
				h.t.Fatalf("STUN handler got %x", pkt)
			}
		},
		Disco: func(pkt []byte, _ netip.AddrPort, _ int) {
			h.calls++
			if wire.Classify(pkt) != wire.KindDisco {
				h.t.Fatalf("discovery handler got %x", pkt)
			}
		},
		RelayedDisco: func(pkt []byte, peer crypto.PublicKey) {
			h.calls++
			if wire.Classify(pkt) != wire.KindDisco || (peer != fuzzPeer && peer != fuzzRelayed) {
				h.t.Fatalf("relayed discovery handler got %x from %s", pkt, peer.Short())
			}
		},
		RelayControl: func(pkt []byte, _ netip.AddrPort) {
			h.calls++
			if f, err := wire.ParseRelay(pkt); err != nil || f.Type == wire.RelayData {
				h.t.Fatalf("relay control handler got %x (%v)", pkt, err)
			}
		},
		Echo: func(pkt []byte) {
			h.calls++
			if wire.Classify(pkt) != wire.KindDisco {
				h.t.Fatalf("echo handler got %x", pkt)
			}
		},
		Self: fuzzSelf,
	}
}

// isWireGuard is the oracle of what may reach wireguard-go: WireGuard's
// message shape (types 1-4, three zero bytes, at least a keepalive's 32
// bytes), written out from the protocol rather than taken from Classify.
func isWireGuard(p []byte) bool {
	return len(p) >= 32 && p[0] >= 1 && p[0] <= 4 && p[1] == 0 && p[2] == 0 && p[3] == 0
}

// relayedWireGuard is the oracle for a relay frame: the WireGuard packet it
// carries from a peer, if that is what it is.
func relayedWireGuard(frame []byte) ([]byte, crypto.PublicKey, bool) {
	if len(frame) < wire.RelayHeaderLen || [4]byte(frame[:4]) != wire.RelayMagic || frame[4] != byte(wire.RelayData) {
		return nil, crypto.PublicKey{}, false
	}
	key := crypto.PublicKey(frame[5:wire.RelayHeaderLen])
	payload := frame[wire.RelayHeaderLen:]
	return payload, key, (key == fuzzPeer || key == fuzzRelayed) && isWireGuard(payload)
}

// FuzzDemux feeds a datagram through each receive path of the Bind (the
// wrapped socket, a stream relay, an auxiliary socket). Only a WireGuard
// packet from a peer, directly or framed by the relay in use, reaches
// wireguard-go, with that peer's endpoint; every
// other datagram goes to the handler of its kind or is counted as dropped,
// exactly one of these per non-empty datagram.
func FuzzDemux(f *testing.F) {
	f.Fuzz(func(t *testing.T, src byte, pkt []byte) {
		if len(pkt) > maxPacket {
			return // the socket never reads more
		}
		from := fuzzSources[int(src)%len(fuzzSources)]
		h := &checkingHandlers{t: t}
		router := staticRouter{
			to:    map[crypto.PublicKey]netip.AddrPort{fuzzPeer: fuzzPeerAddr, fuzzRelayed: {}},
			from:  map[netip.AddrPort]crypto.PublicKey{fuzzPeerAddr: fuzzPeer},
			relay: fuzzRelayAddr,
		}
		b := New(nil, nil)
		b.Attach(router.with(b), h.handlers())

		// The main socket.
		inner := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			sizes[0] = copy(bufs[0], pkt)
			eps[0] = &conn.StdNetEndpoint{AddrPort: from}
			return 1, nil
		}
		bufs, sizes, eps := [][]byte{make([]byte, maxPacket)}, []int{0}, []conn.Endpoint{nil}
		if n, err := b.wrap(inner)(bufs, sizes, eps); n != 1 || err != nil {
			t.Fatalf("receive: %d, %v", n, err)
		}
		unmapped := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		direct := isWireGuard(pkt) && unmapped == fuzzPeerAddr
		payload, key, relayed := relayedWireGuard(pkt)
		switch {
		case direct:
			checkDelivered(t, "direct", bufs[0][:sizes[0]], eps[0], pkt, fuzzPeer)
		case relayed && unmapped == fuzzRelayAddr:
			checkDelivered(t, "relayed", bufs[0][:sizes[0]], eps[0], payload, key)
		case sizes[0] != 0:
			t.Fatalf("%x from %v reached wireguard-go as %x", pkt, from, bufs[0][:sizes[0]])
		}
		outcomes := h.calls + int(b.Stats.Garbage.Load()+b.Stats.UnknownPeer.Load()+b.Stats.RelayedIn.Load()+b.Stats.RelayForged.Load())
		if direct {
			outcomes++
		}
		// An empty datagram is no packet: nothing to hand on or count.
		if want := min(len(pkt), 1); outcomes != want {
			t.Fatalf("%x from %v: %d outcomes (handlers %d, stats %+v), want %d", pkt, from, outcomes, h.calls, statsOf(b), want)
		}

		// A stream relay: anything but a relayed WireGuard packet from a
		// peer is skipped, and the valid frame queued after it comes out.
		sentinel := wire.AppendRelayData(nil, fuzzRelayed, wgPacket(0xee))
		frames := make(chan []byte, 2)
		frames <- bytes.Clone(pkt)
		frames <- sentinel
		if n, err := b.streamReceive(frames, nil)(bufs, sizes, eps); n != 1 || err != nil {
			t.Fatalf("stream receive: %d, %v", n, err)
		}
		if relayed && len(frames) == 1 {
			checkDelivered(t, "stream", bufs[0][:sizes[0]], eps[0], payload, key)
		} else {
			checkDelivered(t, "stream sentinel", bufs[0][:sizes[0]], eps[0], wgPacket(0xee), fuzzRelayed)
		}

		// An auxiliary socket: WireGuard from a peer, or discovery.
		aux := make(chan auxPacket, 2)
		aux <- auxPacket{pkt: bytes.Clone(pkt), from: unmapped, sock: 1} // as readAux queues it
		aux <- auxPacket{pkt: wgPacket(0xef), from: fuzzPeerAddr, sock: 1}
		if n, err := b.auxReceive(aux, nil)(bufs, sizes, eps); n != 1 || err != nil {
			t.Fatalf("aux receive: %d, %v", n, err)
		}
		if direct {
			checkDelivered(t, "aux", bufs[0][:sizes[0]], eps[0], pkt, fuzzPeer)
		} else {
			checkDelivered(t, "aux sentinel", bufs[0][:sizes[0]], eps[0], wgPacket(0xef), fuzzPeer)
		}
	})
}

// checkDelivered checks what wireguard-go got: want, from peer.
func checkDelivered(t *testing.T, path string, got []byte, ep conn.Endpoint, want []byte, peer crypto.PublicKey) {
	t.Helper()
	pe, ok := ep.(*PeerEndpoint)
	if !ok || pe.Key != peer {
		t.Fatalf("%s: endpoint %v, want peer %s", path, ep, peer.Short())
	}
	if !bytes.Equal(got, want) || !isWireGuard(got) {
		t.Fatalf("%s: wireguard-go got %x, want %x", path, got, want)
	}
}

func statsOf(b *Bind) map[string]uint64 {
	return map[string]uint64{
		"garbage": b.Stats.Garbage.Load(), "unknown_peer": b.Stats.UnknownPeer.Load(), "relayed_in": b.Stats.RelayedIn.Load(), "relay_forged": b.Stats.RelayForged.Load(),
		"disco_in": b.Stats.DiscoIn.Load(), "stun_in": b.Stats.STUNIn.Load(), "relay_control": b.Stats.RelayControl.Load(),
	}
}
