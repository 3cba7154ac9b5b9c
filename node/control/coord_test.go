package control

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// waitFor is the deadline of every wait on the other side: generous for
// -race on a loaded machine, never reached when things work.
const waitFor = 20 * time.Second

// coord is an in-test coordinator: HTTPS on loopback with its own
// certificate, pinned by the node's client. Each stream connection is handed
// to script, numbered from 1, right after the WebSocket upgrade.
type coord struct {
	t      *testing.T
	srv    *httptest.Server
	priv   crypto.PrivateKey
	pin    string
	conns  atomic.Int32
	done   chan struct{} // closed when the test ends: releases held connections
	script func(cc *coordConn, n int)
}

// coordConn is one stream connection as the coordinator sees it.
type coordConn struct {
	*coord
	c *websocket.Conn
	// holds is the map the node said it holds in its auth.
	holds *wire.MapVersion
}

func newKey(t *testing.T) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTLSServer serves h over HTTPS on loopback until the test ends and
// returns it with the pin of its certificate.
func newTLSServer(t *testing.T, h http.Handler) (*httptest.Server, string) {
	srv := httptest.NewUnstartedServer(h)
	// Refused handshakes (the bad pin test) are logged with the test.
	srv.Config.ErrorLog = log.New(t.Output(), "server: ", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, crypto.CertFingerprint(srv.Certificate().Raw)
}

// newCoord starts a coordinator whose streams run script.
func newCoord(t *testing.T, script func(cc *coordConn, n int)) *coord {
	co := &coord{t: t, priv: newKey(t), done: make(chan struct{}), script: script}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathStream, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("stream upgrade: %v", err)
			return
		}
		defer c.CloseNow()
		co.script(&coordConn{coord: co, c: c}, int(co.conns.Add(1)))
	})
	co.srv, co.pin = newTLSServer(t, mux)
	t.Cleanup(func() { close(co.done) })
	return co
}

// stream returns a node's stream to co with a fast reconnect.
func (co *coord) stream(t *testing.T) *Stream {
	return &Stream{
		Coordinators: []crypto.Coordinator{{URL: co.srv.URL, Pin: co.pin}},
		Priv:         newKey(t),
		CoordKey:     co.priv.Public(),
		Log:          testLog(t),
		Backoff:      Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond},
	}
}

// send writes one message to the node.
func (cc *coordConn) send(m wire.StreamMsg) bool {
	b, err := json.Marshal(m)
	if err != nil {
		cc.t.Errorf("coordinator: encode %s: %v", m.Type, err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return cc.c.Write(ctx, websocket.MessageText, b) == nil
}

// recv reads one message from the node; false when the stream ended.
func (cc *coordConn) recv() (wire.StreamMsg, bool) {
	var m wire.StreamMsg
	_, b, err := cc.c.Read(context.Background())
	if err != nil {
		return m, false
	}
	if err := json.Unmarshal(b, &m); err != nil {
		cc.t.Errorf("coordinator: bad message from the node: %v", err)
		return m, false
	}
	return m, true
}

// auth challenges the node and checks its proof as the real coordinator
// does; it refuses a wrong proof with unauthorized and reports whether the
// node proved its key.
func (cc *coordConn) auth() bool {
	challenge := make([]byte, 32)
	rand.Read(challenge)
	if !cc.send(wire.StreamMsg{Type: wire.MsgChallenge, Challenge: challenge}) {
		return false
	}
	m, ok := cc.recv()
	if !ok {
		return false
	}
	if m.Type != wire.MsgAuth || m.PublicKey == nil {
		cc.t.Errorf("coordinator: want auth with a public key, got %+v", m)
		return false
	}
	cc.holds = m.Holds
	if !crypto.VerifyProof(cc.priv, *m.PublicKey, wire.ProofLabel, challenge, m.Proof) {
		cc.send(wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeUnauthorized, Error: "proof does not match public key"})
		return false
	}
	return true
}

// hold keeps the connection open, reading nothing, until the test ends.
func (cc *coordConn) hold() { <-cc.done }

// event is one Handler call.
type event struct {
	kind string // welcome, peers, punch or disconnect
	msg  wire.StreamMsg
	err  error
}

// recorder is a Handler that passes its calls to the test, and runs
// onWelcome first when set.
type recorder struct {
	events    chan event
	stop      chan struct{} // closed when the test is done listening
	onWelcome func(wire.StreamMsg)
}

func newRecorder() *recorder {
	return &recorder{events: make(chan event, 64), stop: make(chan struct{})}
}

func (r *recorder) put(e event) {
	select {
	case r.events <- e:
	case <-r.stop:
	}
}

func (r *recorder) OnWelcome(m wire.StreamMsg) {
	if r.onWelcome != nil {
		r.onWelcome(m)
	}
	r.put(event{kind: "welcome", msg: m})
}
func (r *recorder) OnPeers(m wire.StreamMsg) { r.put(event{kind: "peers", msg: m}) }
func (r *recorder) OnPunch(m wire.StreamMsg) { r.put(event{kind: "punch", msg: m}) }
func (r *recorder) OnDisconnect(err error)   { r.put(event{kind: "disconnect", err: err}) }

// next returns the next Handler call, which must be of kind.
func (r *recorder) next(t *testing.T, kind string) event {
	t.Helper()
	select {
	case e := <-r.events:
		if e.kind != kind {
			t.Fatalf("handler got %s (%+v), want %s", e.kind, e, kind)
		}
		return e
	case <-time.After(waitFor):
		t.Fatalf("handler got no %s in %v", kind, waitFor)
		return event{}
	}
}

// run runs s with h until the test ends and returns Run's result.
func run(t *testing.T, s *Stream, h *recorder) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		done <- s.Run(ctx, h)
	}()
	t.Cleanup(func() {
		cancel()
		close(h.stop)
		select {
		case <-exited:
		case <-time.After(waitFor):
			t.Errorf("Run did not return in %v after its context ended", waitFor)
		}
	})
	return done
}
