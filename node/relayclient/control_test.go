package relayclient

import (
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// fakeRelay is a relay the test plays by hand on a loopback socket.
type fakeRelay struct {
	t    *testing.T
	key  crypto.PrivateKey
	conn *net.UDPConn
	addr netip.AddrPort
}

func newFakeRelay(t *testing.T) *fakeRelay {
	c := loopback(t)
	return &fakeRelay{t: t, key: newKey(t), conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (f *fakeRelay) candidate() Candidate {
	return Candidate{Key: f.key.Public(), Addr: f.addr.String()}
}

// expect returns the next frame of type typ from n, skipping the hellos
// that Relays repeats meanwhile.
func (f *fakeRelay) expect(n *testNode, typ wire.RelayType) wire.RelayFrame {
	f.t.Helper()
	buf := make([]byte, maxFrame)
	f.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		m, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			f.t.Fatalf("fake relay: no frame type %d from the node: %v", typ, err)
		}
		fr, err := wire.ParseRelay(buf[:m])
		if err != nil || from != n.addr || fr.Key != n.pub {
			f.t.Fatalf("fake relay: unexpected %d bytes from %s (err %v)", m, from, err)
		}
		if fr.Type == typ {
			fr.Challenge, fr.Proof = append([]byte(nil), fr.Challenge...), append([]byte(nil), fr.Proof...)
			return fr
		}
		if fr.Type != wire.RelayHello {
			f.t.Fatalf("fake relay: frame type %d, want %d", fr.Type, typ)
		}
	}
}

// send sends a control frame to n from the relay's address.
func (f *fakeRelay) send(n *testNode, fr wire.RelayFrame) {
	f.t.Helper()
	if _, err := f.conn.WriteToUDPAddrPort(fr.Marshal(), n.addr); err != nil {
		f.t.Fatalf("fake relay send: %v", err)
	}
}

// challenge sends a fresh challenge and waits for the node's valid answer.
func (f *fakeRelay) challenge(n *testNode) []byte {
	f.t.Helper()
	c := make([]byte, wire.RelayChallengeLen)
	rand.Read(c)
	f.send(n, wire.RelayFrame{Type: wire.RelayChallenge, Challenge: c})
	auth := f.expect(n, wire.RelayAuth)
	if string(auth.Challenge) != string(c) || !crypto.VerifyProof(f.key, n.pub, wire.RelayProofLabel, c, auth.Proof) {
		f.t.Fatalf("fake relay: the node's auth does not prove its key for our challenge")
	}
	return c
}

// okFrame is the OK that relay key sends node for challenge, with the
// relay's proof.
func okFrame(t *testing.T, key crypto.PrivateKey, node crypto.PublicKey, challenge []byte) wire.RelayFrame {
	t.Helper()
	proof, err := crypto.Proof(key, node, wire.RelayOKProofLabel, challenge)
	if err != nil {
		t.Fatal(err)
	}
	return wire.RelayFrame{Type: wire.RelayOK, Challenge: challenge, Proof: proof}
}

// TestSpoofedOKDoesNotBind sends OKs the relay did not send for our
// answer; none binds, and the relay's own OK still does.
func TestSpoofedOKDoesNotBind(t *testing.T) {
	tests := []struct {
		name  string
		spoof func(t *testing.T, f *fakeRelay, n *testNode, answered []byte)
	}{
		{"OK from another address", func(t *testing.T, f *fakeRelay, n *testNode, answered []byte) {
			if _, err := loopback(t).WriteToUDPAddrPort(okFrame(t, f.key, n.pub, answered).Marshal(), n.addr); err != nil {
				t.Fatal(err)
			}
		}},
		{"OK not echoing our challenge", func(t *testing.T, f *fakeRelay, n *testNode, answered []byte) {
			other := make([]byte, len(answered))
			rand.Read(other)
			f.send(n, okFrame(t, f.key, n.pub, other))
		}},
		// A spoofer on the relay's address saw our challenge (or sent it)
		// but holds no relay key.
		{"OK without the relay's proof", func(t *testing.T, f *fakeRelay, n *testNode, answered []byte) {
			f.send(n, okFrame(t, newKey(t), n.pub, answered))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRelay(t)
			n := newTestNode(t, fastTiming)
			n.relays.SetCandidates(f.candidate(), nil)
			f.expect(n, wire.RelayHello)
			tt.spoof(t, f, n, f.challenge(n))
			// The node answers a second challenge after taking the
			// spoofed OK: by then it would have bound.
			answered := f.challenge(n)
			select {
			case r := <-n.routes:
				t.Fatalf("spoofed OK gave route %+v", r.Info())
			default:
			}
			if st := n.relays.Status(); st.UDPBound {
				t.Fatalf("status = %+v after a spoofed OK, want unbound", st)
			}
			f.send(n, okFrame(t, f.key, n.pub, answered))
			n.waitRoute(t, "route after the relay's OK", udpRouteTo(f.addr))
		})
	}
}

// TestHandleControlNeverBlocks holds Run (in the node's OnRoute) and
// floods HandleControl, as a spoofer could: every call returns, and the
// frames Run had no room for are counted.
func TestHandleControlNeverBlocks(t *testing.T) {
	const calls = 10000
	held, release := make(chan bind.Route, 8), make(chan struct{})
	defer close(release)
	f := newFakeRelay(t)
	n := newTestNode(t, fastTiming, withOnRoute(func(r bind.Route) {
		held <- r
		<-release
	}))
	n.relays.SetCandidates(f.candidate(), nil)
	f.expect(n, wire.RelayHello)
	f.send(n, okFrame(t, f.key, n.pub, f.challenge(n)))
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatalf("no route after %v", waitTimeout)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		pkt := wire.RelayFrame{Type: wire.RelayChallenge, Challenge: make([]byte, wire.RelayChallengeLen)}.Marshal()
		for range calls {
			n.relays.HandleControl(pkt, f.addr)
		}
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%d HandleControl calls not done after %v while Run was held", calls, waitTimeout)
	}
	if got := n.relays.Stats.ControlDropped.Load(); got < calls-controlQueue {
		t.Fatalf("ControlDropped = %d, want at least %d", got, calls-controlQueue)
	}
}
