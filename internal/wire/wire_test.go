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
		{Type: DiscoReady},
	} {
		got, err := ParseDisco(d.Marshal())
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
