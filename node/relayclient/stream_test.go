package relayclient

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// TestTCPFallback blocks UDP to the relay (the node's UDP relay is a port
// that never answers): once a hello goes unanswered for HelloWait the TCP
// relay route arrives (TCPGrace, the wait for a relay to say hello to, is
// out of reach) and carries packets to and from a node on the UDP relay.
// Once UDP binds again, the UDP route is back and the stream closes.
func TestTCPFallback(t *testing.T) {
	t.Parallel() // its own relay and node; it waits for the TCP grace
	s := startRelay(t)
	s.serveTLS(t)
	dead := Candidate{Key: s.key.Public(), Addr: loopback(t).LocalAddr().String()}
	timing := fastTiming
	timing.TCPGrace = time.Hour
	a := newTestNode(t, timing, withTCP(s.url, s.client, s.key.Public()))
	b := newTestNode(t, fastTiming)
	s.auth.add(a.pub, b.pub)
	s.auth.peer(a.pub, b.pub)
	a.relays.SetCandidates(dead, nil)
	b.relays.SetCandidates(s.candidate(), nil)

	ra := a.waitRoute(t, "TCP relay route", streamRouteVia(s.url))
	rb := b.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))
	a.waitStatus(t, "TCP relay up", func(st Status) bool { return st.TCPUp && !st.UDPBound })

	out, in := wgPacket(1420, 1), wgPacket(148, 2)
	send(t, ra, b.pub, out)
	b.expectPacket(t, a.pub, out)
	send(t, rb, a.pub, in)
	a.expectPacket(t, b.pub, in)

	a.relays.SetCandidates(s.candidate(), nil)
	a.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))
	a.waitStatus(t, "TCP relay closed", func(st Status) bool { return st.UDPBound && !st.TCPUp })
	// The relay would close an unbound socket on its own only after its
	// 10 s auth timeout; well before, it is the node's close that shows.
	wait.For(t, 5*time.Second, "relay WebSocket closed", func() bool { return s.wsOpen.Load() == 0 })
}

// stalledRelay is a WebSocket relay that binds the node and then stops
// reading, as a stalled TCP connection does.
func stalledRelay(t *testing.T, key crypto.PrivateKey) (url string, client *http.Client) {
	release := make(chan struct{})
	url, client = serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		hello, err := wire.ParseRelay(msg)
		if err != nil {
			return
		}
		challenge := make([]byte, wire.RelayChallengeLen)
		if c.Write(ctx, websocket.MessageBinary, wire.RelayFrame{Type: wire.RelayChallenge, Challenge: challenge}.Marshal()) != nil {
			return
		}
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
		if c.Write(ctx, websocket.MessageBinary, okFrame(t, key, hello.Key, challenge).Marshal()) != nil {
			return
		}
		<-release
	}))
	// Registered after serveTLS's: runs first, so the server can close.
	t.Cleanup(func() { close(release) })
	return url, client
}

// TestStreamSendNeverStalls sends on the TCP relay route while the relay
// has stopped reading, until the stalled write ends the session: every
// call returns meanwhile (thousands, before a generous deadline), and the
// frames that found the queue full are dropped and counted.
func TestStreamSendNeverStalls(t *testing.T) {
	t.Parallel() // its own relay and node; it waits on a stalled stream
	relayKey := newKey(t)
	url, client := stalledRelay(t, relayKey)
	timing := Timing{TCPGrace: time.Millisecond, StreamWrite: 200 * time.Millisecond}
	n := newTestNode(t, timing, withTCP(url, client, relayKey.Public()))
	r := n.waitRoute(t, "TCP relay route", streamRouteVia(url))
	peer := newKey(t).Public()
	pkt := wgPacket(1420, 1)

	done, stop := make(chan int), make(chan struct{})
	defer close(stop)
	go func() {
		for calls := 1; ; calls++ {
			// Other errors are drops, counted in Stats.
			if err := r.Send([][]byte{pkt}, peer); errors.Is(err, errStreamDown) {
				done <- calls
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	select {
	case calls := <-done:
		dropped := n.relays.Stats.StreamDropped.Load()
		if calls < 1000 || dropped == 0 {
			t.Fatalf("%d sends until the stalled session ended, %d dropped; want thousands, and drops counted", calls, dropped)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("sends to a stalled stream: the session still up, or a send blocked, after %v", waitTimeout)
	}
}
