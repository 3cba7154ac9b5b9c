package wire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/crypto"
)

func TestClassify(t *testing.T) {
	wg := func(typ byte, n int) []byte {
		b := make([]byte, n)
		b[0] = typ
		return b
	}
	stunMsg := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Kind
	}{
		{"wireguard initiation", wg(1, 148), KindWireGuard},
		{"wireguard transport", wg(4, 32), KindWireGuard},
		{"wireguard type 5", wg(5, 148), KindUnknown},
		{"wireguard too short", wg(4, 31), KindUnknown},
		{"wireguard reserved bytes set", append([]byte{4, 1, 0, 0}, make([]byte, 40)...), KindUnknown},
		{"stun", stunMsg, KindSTUN},
		{"stun cookie wrong", append(append([]byte{}, stunMsg[:4]...), make([]byte, 16)...), KindUnknown},
		{"disco", append(DiscoMagic[:], 9), KindDisco},
		{"relay", append(RelayMagic[:], 5), KindRelay},
		{"empty", nil, KindUnknown},
		{"text", []byte("GET / HTTP/1.1\r\n\r\n"), KindUnknown},
	} {
		if got := Classify(tc.pkt); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDiscoRoundTrip(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.1.1:41820")
	for _, d := range []Disco{
		{Type: DiscoPing, TxID: [TxIDLen]byte{1, 2, 3}},
		{Type: DiscoPong, TxID: [TxIDLen]byte{4}, Src: src},
		{Type: DiscoPong, TxID: [TxIDLen]byte{5}, Src: netip.MustParseAddrPort("[2001:db8::1]:9")},
		{Type: DiscoCallMeMaybe, Addr: []netip.AddrPort{src, netip.MustParseAddrPort("10.0.0.1:1")}},
		{Type: DiscoPing, TxID: [TxIDLen]byte{6}, Pad: 1400},
		{Type: DiscoPong, TxID: [TxIDLen]byte{7}, Src: src, Pad: 1381},
		{Type: DiscoReady},
		{Type: DiscoOffline},
	} {
		b := d.Marshal()
		if want := map[DiscoType]int{DiscoPing: DiscoPingLen, DiscoPong: DiscoPongLen}[d.Type] + d.Pad; (d.Type == DiscoPing || d.Type == DiscoPong) && len(b) != want {
			t.Errorf("%v padded by %d: %d bytes, want %d", d.Type, d.Pad, len(b), want)
		}
		got, err := ParseDisco(b)
		if err != nil {
			t.Fatalf("%v: %v", d.Type, err)
		}
		if got.Type != d.Type || got.TxID != d.TxID || got.Src != d.Src || len(got.Addr) != len(d.Addr) {
			t.Fatalf("round trip: got %+v, want %+v", got, d)
		}
	}
	for _, bad := range [][]byte{nil, {9}, {byte(DiscoPing), 1}, {byte(DiscoPong), 1, 2}, append([]byte{byte(DiscoCallMeMaybe)}, make([]byte, 17)...), {byte(DiscoReady), 0}} {
		if _, err := ParseDisco(bad); err == nil {
			t.Errorf("ParseDisco(%x) accepted", bad)
		}
	}
}

func TestRelayFrames(t *testing.T) {
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := k.Public()
	ch := bytes.Repeat([]byte{7}, RelayChallengeLen)
	proof := bytes.Repeat([]byte{8}, 32)
	for _, f := range []RelayFrame{
		{Type: RelayData, Key: key, Payload: []byte("payload")},
		{Type: RelayHello, Key: key},
		{Type: RelayChallenge, Challenge: ch},
		{Type: RelayAuth, Key: key, Challenge: ch, Proof: proof},
		{Type: RelayOK, Challenge: ch, Proof: proof},
	} {
		got, err := ParseRelay(f.Marshal())
		if err != nil {
			t.Fatalf("type %d: %v", f.Type, err)
		}
		if got.Type != f.Type || got.Key != f.Key || !bytes.Equal(got.Challenge, f.Challenge) || !bytes.Equal(got.Proof, f.Proof) || !bytes.Equal(got.Payload, f.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", got, f)
		}
	}
	for _, bad := range [][]byte{nil, RelayMagic[:], append(RelayMagic[:], 99), append(RelayMagic[:], byte(RelayAuth), 1), append(RelayMagic[:], byte(RelayOK))} {
		if _, err := ParseRelay(bad); err == nil {
			t.Errorf("ParseRelay(%x) accepted", bad)
		}
	}
}

// Both ends of a node–coordinator pair compute the same STUN password, and
// no third key does.
func TestSTUNPassword(t *testing.T) {
	var keys [3]crypto.PrivateKey
	for i := range keys {
		k, err := crypto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	node, coord, other := keys[0], keys[1], keys[2]
	a, err := STUNPassword(node, coord.Public())
	if err != nil {
		t.Fatal(err)
	}
	b, err := STUNPassword(coord, node.Public())
	if err != nil {
		t.Fatal(err)
	}
	c, err := STUNPassword(other, coord.Public())
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a == c || len(a) != 64 {
		t.Fatalf("node %q, coordinator %q, stranger %q: want the first two equal, 64 hex digits, and the third different", a, b, c)
	}
}

func TestVouches(t *testing.T) {
	for _, tc := range []struct {
		seen, ip string
		want     bool
	}{
		{"198.18.1.1", "198.18.1.1", true},
		{"198.18.1.1", "198.18.1.2", false},
		{"::ffff:198.18.1.1", "198.18.1.1", true},
		{"2001:2:0:1::5", "2001:2:0:1:aaaa::9", true},
		{"2001:2:0:1::5", "2001:2:0:2::5", false},
		{"2001:2:0:1::5", "198.18.1.1", false},
	} {
		if got := Vouches(netip.MustParseAddr(tc.seen), netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Vouches(%s, %s) = %v, want %v", tc.seen, tc.ip, got, tc.want)
		}
	}
}

func TestRelayEcho(t *testing.T) {
	token := [RelayEchoTokenLen]byte{1, 2, 3, 15: 9}
	echo := AppendRelayEcho(nil, token)
	for _, tc := range []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"an echo", echo, true},
		{"short", echo[:RelayEchoLen-1], false},
		{"long", append(append([]byte{}, echo...), 0), false},
		{"not discovery", append(append([]byte{}, RelayMagic[:]...), echo[4:]...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRelayEcho(tc.pkt)
			if (err == nil) != tc.ok || (tc.ok && got != token) {
				t.Fatalf("ParseRelayEcho = %x, %v; want ok %t", got, err, tc.ok)
			}
		})
	}
	if Classify(echo) != KindDisco {
		t.Fatalf("an echo classifies as %v, want %v: the relay forwards discovery and WireGuard only", Classify(echo), KindDisco)
	}
}

func TestPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"198.18.1.1", true},
		{"203.0.113.7", true},
		{"::ffff:198.18.1.1", true},
		{"2001:2:0:1::5", true},
		{"2a00:1450::1", true},
		{"10.1.0.2", false},
		{"192.168.1.2", false},
		{"100.64.3.2", false},
		{"fd6d:6573:686e::1", false},
		{"fe80::1", false},
		{"::1", false},
		{"127.0.0.1", false},
		{"ff02::1", false},
		{"::", false},
	} {
		if got := PublicAddr(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("PublicAddr(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}
