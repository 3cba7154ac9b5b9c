package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/meshnode/meshnode/crypto"
)

// The seed corpora in testdata/fuzz were built with this package's
// encoders (Disco.Marshal, RelayFrame.Marshal, json.Marshal of the control
// types): one real message of each kind.

// FuzzParseDisco checks that a discovery plaintext either fails with
// ErrDisco or is a message that Marshal writes back as the bytes it came
// from: nothing the parser accepts is lost or invented.
func FuzzParseDisco(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDisco(b)
		if err != nil {
			if !errors.Is(err, ErrDisco) {
				t.Fatalf("ParseDisco(%x): error %v is not ErrDisco", b, err)
			}
			return
		}
		if len(d.Addr) > maxCallMeMaybe {
			t.Fatalf("ParseDisco(%x): %d candidates, more than %d", b, len(d.Addr), maxCallMeMaybe)
		}
		// Ping and pong may carry trailing bytes (room for later fields);
		// what Marshal writes is the prefix the parser read.
		enc := d.Marshal()
		if !bytes.HasPrefix(b, enc) {
			t.Fatalf("ParseDisco(%x) = %+v, which marshals to %x: not a prefix of the input", b, d, enc)
		}
		if d.Type == DiscoCallMeMaybe && !bytes.Equal(enc, b) {
			t.Fatalf("call-me-maybe %x re-encodes as %x", b, enc)
		}
		back, err := ParseDisco(enc)
		if err != nil || !reflect.DeepEqual(back, d) {
			t.Fatalf("round trip of %+v: %+v, %v", d, back, err)
		}
	})
}

// relayBodyNeeds is each relay frame type's least body length, written
// out from the format (relay.go's comment) rather than taken from the
// parser under test.
var relayBodyNeeds = map[RelayType]int{
	RelayData:      crypto.KeyLen,
	RelayHello:     crypto.KeyLen,
	RelayChallenge: RelayChallengeLen,
	RelayAuth:      crypto.KeyLen + RelayChallengeLen + proofLen,
	RelayOK:        RelayChallengeLen + proofLen,
}

// FuzzParseRelay checks that ParseRelay accepts exactly the well-formed
// frames, that an accepted frame marshals back to the bytes it was read
// from, that a data frame's payload aliases the input (the Bind unframes in
// place), and that any payload survives AppendRelayData and ParseRelay.
func FuzzParseRelay(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseRelay(b)
		need, known := 0, false
		if len(b) >= 5 {
			need, known = relayBodyNeeds[RelayType(b[4])]
		}
		wellFormed := len(b) >= 5 && [4]byte(b[:4]) == RelayMagic && known && len(b)-5 >= need
		if (err == nil) != wellFormed {
			t.Fatalf("ParseRelay(%x): err %v, but well-formed is %v", b, err, wellFormed)
		}
		if err == nil {
			enc := fr.Marshal()
			if !bytes.HasPrefix(b, enc) || (fr.Type == RelayData && !bytes.Equal(b, enc)) {
				t.Fatalf("ParseRelay(%x) = %+v, which marshals to %x", b, fr, enc)
			}
			if fr.Type == RelayData && len(fr.Payload) > 0 && &fr.Payload[0] != &b[RelayHeaderLen] {
				t.Fatal("data payload was copied, not aliased")
			}
			back, err := ParseRelay(enc)
			if err != nil || back.Type != fr.Type || back.Key != fr.Key || !bytes.Equal(back.Challenge, fr.Challenge) ||
				!bytes.Equal(back.Proof, fr.Proof) || !bytes.Equal(back.Payload, fr.Payload) {
				t.Fatalf("round trip of %+v: %+v, %v", fr, back, err)
			}
		}

		key := crypto.PublicKey(sha256.Sum256(b))
		frame := AppendRelayData([]byte("prefix"), key, b)
		data, err := ParseRelay(frame[len("prefix"):])
		if err != nil || data.Type != RelayData || data.Key != key || !bytes.Equal(data.Payload, b) {
			t.Fatalf("AppendRelayData(%x) parsed as %+v, %v", b, data, err)
		}
		if len(frame)-len("prefix") != RelayHeaderLen+len(b) {
			t.Fatalf("data frame of a %d-byte payload is %d bytes, want %d", len(b), len(frame)-len("prefix"), RelayHeaderLen+len(b))
		}
	})
}

// FuzzControlJSON decodes arbitrary bytes as each control API and stream
// body. Whatever decodes must encode again (the coordinator passes a
// node's endpoints and NAT on to its peers), and the encoding must be
// stable: decoding it and encoding again gives the same bytes, so no field
// changes meaning on its way through the coordinator.
// FuzzParseRelayEcho: an echo is exactly the discovery magic and a token,
// and what parses encodes back to the same bytes.
func FuzzParseRelayEcho(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		token, err := ParseRelayEcho(b)
		want := len(b) == RelayEchoLen && Classify(b) == KindDisco
		if (err == nil) != want {
			t.Fatalf("ParseRelayEcho(%x): err %v, want ok %t", b, err, want)
		}
		if err == nil && !bytes.Equal(AppendRelayEcho(nil, token), b) {
			t.Fatalf("ParseRelayEcho(%x) = %x does not encode back", b, token)
		}
	})
}

func FuzzControlJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		checkJSON[StreamMsg](t, b)
		checkJSON[RegisterRequest](t, b)
		checkJSON[RegisterResponse](t, b)
		checkJSON[ErrorResponse](t, b)
	})
}

func checkJSON[T any](t *testing.T, b []byte) {
	t.Helper()
	var v T
	if json.Unmarshal(b, &v) != nil {
		return
	}
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%T decoded from %q does not encode: %v", v, b, err)
	}
	var again T
	if err := json.Unmarshal(enc, &again); err != nil {
		t.Fatalf("%T: own encoding %s does not decode: %v", v, enc, err)
	}
	enc2, err := json.Marshal(again)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("%T: encoding not stable:\n%s\n%s (%v)", v, enc, enc2, err)
	}
}
