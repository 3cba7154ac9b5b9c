package tcppunch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The seed corpora in testdata/fuzz were built with this package's own
// writers: authenticate's hello and proof, and Path.SendFrames.

// scriptConn is a connection whose other end sends fixed bytes and then
// closes; what this end writes is kept.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func newScriptConn(in []byte) *scriptConn { return &scriptConn{in: bytes.NewReader(in)} }

func (c *scriptConn) Read(b []byte) (int, error)  { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error) { return c.out.Write(b) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41820}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 41820}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzKey is a deterministic key, so that the corpus's hellos name the
// expected peer in every run.
func fuzzKey(seed byte) crypto.PrivateKey {
	var k crypto.PrivateKey
	for i := range k {
		k[i] = seed + byte(i)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

var (
	fuzzSelf = fuzzKey(1)
	fuzzPeer = fuzzKey(101)
)

// FuzzHandshake plays a stranger's side of the handshake with arbitrary
// bytes. readHello accepts exactly a hello of the right magic and version
// and returns its fields; authenticate never succeeds without the peer's
// key, writes its hello and nothing else to anyone but the peer it
// expects, and proves its key only once the other end claimed that peer.
func FuzzHandshake(f *testing.F) {
	self := fuzzSelf.Public()
	peer := fuzzPeer.Public()
	f.Fuzz(func(t *testing.T, theirs []byte) {
		key, challenge, err := readHello(newScriptConn(theirs))
		wellFormed := len(theirs) >= helloLen && bytes.Equal(theirs[:4], helloMagic[:]) && theirs[4] == helloVersion
		if (err == nil) != wellFormed {
			t.Fatalf("readHello(%x): %v, but well-formed is %v", theirs, err, wellFormed)
		}
		if err == nil && (key != crypto.PublicKey(theirs[5:5+crypto.KeyLen]) || !bytes.Equal(challenge, theirs[5+crypto.KeyLen:helloLen])) {
			t.Fatalf("readHello(%x) = %s, %x: not the hello's fields", theirs, key.Short(), challenge)
		}

		c := newScriptConn(theirs)
		err = authenticate(c, fuzzSelf, peer, nil)
		if err == nil {
			t.Fatalf("authenticated %x without the peer's key", theirs)
		}
		wrote := c.out.Bytes()
		if len(wrote) < helloLen || !bytes.Equal(wrote[:4], helloMagic[:]) || crypto.PublicKey(wrote[5:5+crypto.KeyLen]) != self {
			t.Fatalf("wrote %x, want this node's hello first", wrote)
		}
		claimsPeer := wellFormed && key == peer
		switch {
		case !claimsPeer && len(wrote) != helloLen:
			t.Fatalf("wrote %d bytes to an end that claims %s, want only the %d-byte hello", len(wrote), key.Short(), helloLen)
		case claimsPeer && len(wrote) > helloLen+proofLen:
			t.Fatalf("wrote %d bytes, more than hello and proof", len(wrote))
		case claimsPeer && len(theirs) >= helloLen+proofLen && !errors.Is(err, errWrongPeer):
			t.Fatalf("a wrong proof: %v, want errWrongPeer", err)
		}
	})
}

// FuzzFraming reads an arbitrary byte stream as a punched path's framing:
// every frame delivered is a whole relay data frame from the path's peer,
// in the order sent, and reading stops at the first that is not. Then the
// input, cut into packets, is sent by one path and read by another: the
// packets arrive unchanged, from the sender's key.
func FuzzFraming(f *testing.F) {
	self, peer := fuzzSelf.Public(), fuzzPeer.Public()
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, stream []byte) {
		var got [][]byte
		p := newPath(newScriptConn(stream), self, peer, func(fr []byte) { got = append(got, fr) }, log)
		if err := p.read(); err == nil {
			t.Fatal("read ended without an error")
		}
		want := validFrames(stream, peer)
		if len(got) != len(want) {
			t.Fatalf("delivered %d frames, the stream holds %d valid ones before the first bad one", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d: delivered %x, sent %x", i, got[i], want[i])
			}
		}

		packets := bytes.SplitN(stream, []byte{0xff}, 8)
		frames := make([][]byte, len(packets))
		for i, pkt := range packets {
			frames[i] = wire.AppendRelayData(nil, peer, pkt)
		}
		sender := newScriptConn(nil)
		if err := newPath(sender, self, peer, nil, log).SendFrames(frames); err != nil {
			t.Fatalf("SendFrames: %v", err)
		}
		var back [][]byte
		receiver := newPath(newScriptConn(sender.out.Bytes()), peer, self, func(fr []byte) { back = append(back, fr) }, log)
		err := receiver.read() // at the end of the stream
		if len(back) != len(packets) {
			t.Fatalf("sent %d packets, %d arrived before %v", len(packets), len(back), err)
		}
		for i, fr := range back {
			rf, err := wire.ParseRelay(fr)
			if err != nil || rf.Key != self || !bytes.Equal(rf.Payload, packets[i]) {
				t.Fatalf("packet %d arrived as %+v (%v), sent %x from %s", i, rf, err, packets[i], self.Short())
			}
		}
	})
}

// validFrames is the oracle of FuzzFraming: the frames of stream up to the
// first one a path must refuse, from the format rather than the reader.
func validFrames(stream []byte, peer crypto.PublicKey) [][]byte {
	var out [][]byte
	for len(stream) >= lengthLen {
		n := binary.BigEndian.Uint32(stream)
		stream = stream[lengthLen:]
		if n < wire.RelayHeaderLen || n > wire.MaxRelayFrame || uint32(len(stream)) < n {
			break
		}
		fr := stream[:n]
		stream = stream[n:]
		if [4]byte(fr[:4]) != wire.RelayMagic || fr[4] != byte(wire.RelayData) || crypto.PublicKey(fr[5:wire.RelayHeaderLen]) != peer {
			break
		}
		out = append(out, fr)
	}
	return out
}
