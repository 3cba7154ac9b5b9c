package relay

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestGarbage(t *testing.T) {
	h := newHarness(t, false)
	key := newKey(t).Public()
	tests := []struct {
		name string
		pkt  []byte
		want result
	}{
		{"empty", nil, resNotRelay},
		{"magic only", wire.RelayMagic[:], resGarbage},
		{"unknown type", append(wire.RelayMagic[:], 99), resGarbage},
		{"truncated hello", append(wire.RelayMagic[:], byte(wire.RelayHello), 1, 2), resGarbage},
		{"truncated auth", wire.RelayFrame{Type: wire.RelayAuth, Key: key, Challenge: make([]byte, 32), Proof: make([]byte, 32)}.Marshal()[:50], resGarbage},
		{"auth missing proof", append(append(wire.RelayMagic[:], byte(wire.RelayAuth)), make([]byte, 64)...), resGarbage},
		{"challenge from a node", wire.RelayFrame{Type: wire.RelayChallenge, Challenge: make([]byte, 32)}.Marshal(), resGarbage},
		{"ok from a node", wire.RelayFrame{Type: wire.RelayOK}.Marshal(), resGarbage},
		{"data header only", wire.AppendRelayData(nil, key, nil), resBadPayload},
		{"nested relay frame", wire.AppendRelayData(nil, key, wire.AppendRelayData(nil, key, wgPacket(64, 1))), resBadPayload},
		{"unknown type with a body", append(append(wire.RelayMagic[:], 0xF0), randomBytes(1000)...), resGarbage},
		{"auth with zero key", wire.RelayFrame{Type: wire.RelayAuth, Challenge: make([]byte, 32), Proof: make([]byte, 32)}.Marshal(), resBadChallenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, c := fakeSock()
			before := h.count(tt.want)
			deliver(h.s, sock, tt.pkt, netip.MustParseAddrPort("192.0.2.1:9"))
			if got := h.count(tt.want); got != before+1 {
				t.Fatalf("%s counter went %v → %v, want +1", tt.want, before, got)
			}
			if len(c.sent) != 0 {
				t.Fatalf("the relay answered garbage with %d packets", len(c.sent))
			}
		})
	}
}

func TestServeUDPDropsOtherProtocols(t *testing.T) {
	h := newHarness(t, false)
	n := h.newUDPNode(t, newKey(t))
	stun := make([]byte, 20)
	stun[4], stun[5], stun[6], stun[7] = 0x21, 0x12, 0xA4, 0x42
	for i, pkt := range [][]byte{stun, wgPacket(64, 1), []byte("hello")} {
		n.send(pkt)
		h.waitCount(t, resNotRelay, float64(i+1))
	}
}

func TestSendErrorCounted(t *testing.T) {
	h := newHarness(t, false)
	before := h.count(resSendError)
	sock, c := fakeSock()
	c.fail = true
	deliver(h.s, sock, wire.RelayFrame{Type: wire.RelayHello, Key: newKey(t).Public()}.Marshal(), netip.MustParseAddrPort("192.0.2.1:9"))
	if got := h.count(resSendError); got != before+1 {
		t.Fatalf("send_error = %v, want %v", got, before+1)
	}
}

func TestChallengeTableBounded(t *testing.T) {
	h := newHarness(t, false)
	sock, _ := fakeSock()
	key := newKey(t).Public()
	for i := range maxChallenges + 100 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 9)
		deliver(h.s, sock, wire.RelayFrame{Type: wire.RelayHello, Key: key}.Marshal(), from)
	}
	h.s.mu.RLock()
	n := len(h.s.pending)
	h.s.mu.RUnlock()
	if n > maxChallenges {
		t.Fatalf("%d challenges held, want at most %d", n, maxChallenges)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMesh(t, false, func(o *Options) { o.Registry = reg })
	m.a.send(wire.AppendRelayData(nil, m.b.pub, wgPacket(100, 1)))
	expectData(t, m.b, m.a.pub, wgPacket(100, 1))
	m.waitCount(t, resForwarded, 1)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetGauge() != nil:
				got[f.GetName()] = mt.GetGauge().GetValue()
			case len(mt.GetLabel()) == 1:
				got[f.GetName()+"/"+mt.GetLabel()[0].GetValue()] = mt.GetCounter().GetValue()
			default:
				got[f.GetName()] = mt.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"meshnode_relay_bound_nodes":                3,
		"meshnode_relay_bytes_total":                100,
		"meshnode_relay_packets_total/forwarded":    1,
		"meshnode_relay_packets_total/bound":        3,
		"meshnode_relay_packets_total/rate_limited": 0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// FuzzHandle feeds the relay any datagram: it must not panic, and what it
// sends must be relay frames.
func FuzzHandle(f *testing.F) {
	key := crypto.PublicKey{1}
	f.Add(wire.RelayFrame{Type: wire.RelayHello, Key: key}.Marshal())
	f.Add(wire.RelayFrame{Type: wire.RelayAuth, Key: key, Challenge: make([]byte, 32), Proof: make([]byte, 32)}.Marshal())
	f.Add(wire.AppendRelayData(nil, key, wgPacket(64, 1)))
	f.Add([]byte{'M', 'N', 'r', 1, 0xFF})
	s := New(Options{Key: crypto.PrivateKey{2}, Auth: newFakeAuth()})
	from := netip.MustParseAddrPort("192.0.2.1:9")
	sock, c := fakeSock()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		c.sent = c.sent[:0]
		deliver(s, sock, pkt, from)
		for _, out := range c.sent {
			if _, err := wire.ParseRelay(out); err != nil {
				t.Fatalf("relay sent an unparsable frame: %v", err)
			}
		}
	})
}
