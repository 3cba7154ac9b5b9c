package control

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

func peerKey(i int) *crypto.PublicKey {
	var k crypto.PublicKey
	binary.BigEndian.PutUint32(k[:], uint32(i)+1)
	return &k
}

func TestStreamSession(t *testing.T) {
	peer := wire.Node{Name: "b", PublicKey: *peerKey(1)}
	co := newCoord(t, func(cc *coordConn, _ int) {
		if !cc.auth() {
			t.Error("the node's proof does not verify")
			return
		}
		cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Self: &wire.Node{Name: "a"}, Peers: []wire.Node{peer}, Version: 1})
		cc.send(wire.StreamMsg{Type: wire.MsgPeers, Remove: []crypto.PublicKey{peer.PublicKey}, Version: 2})
		cc.send(wire.StreamMsg{Type: "from_a_newer_coordinator"})
		cc.send(wire.StreamMsg{Type: wire.MsgPunch, Peer: &peer.PublicKey})
		cc.hold()
	})
	s := co.stream(t)
	h := newRecorder()
	run(t, s, h)

	if w := h.next(t, "welcome").msg; w.Self == nil || w.Self.Name != "a" || len(w.Peers) != 1 || w.Peers[0].Name != "b" {
		t.Fatalf("welcome %+v", w)
	}
	if !s.Connected() {
		t.Fatal("not connected after the welcome")
	}
	if p := h.next(t, "peers").msg; p.Version != 2 || len(p.Remove) != 1 || p.Remove[0] != peer.PublicKey {
		t.Fatalf("peers %+v", p)
	}
	if p := h.next(t, "punch").msg; p.Peer == nil || *p.Peer != peer.PublicKey {
		t.Fatalf("punch %+v", p)
	}
}

func TestStreamReconnects(t *testing.T) {
	co := newCoord(t, func(cc *coordConn, n int) {
		if !cc.auth() {
			return
		}
		cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Version: uint64(n)})
		if n == 1 {
			cc.c.Close(websocket.StatusGoingAway, "restarting")
			return
		}
		cc.hold()
	})
	s := co.stream(t)
	h := newRecorder()
	run(t, s, h)

	if v := h.next(t, "welcome").msg.Version; v != 1 {
		t.Fatalf("first welcome has version %d", v)
	}
	if err := h.next(t, "disconnect").err; err == nil {
		t.Fatal("OnDisconnect without the reason")
	}
	if v := h.next(t, "welcome").msg.Version; v != 2 {
		t.Fatalf("welcome after the reconnect has version %d, want 2", v)
	}
	if !s.Connected() {
		t.Fatal("not connected after the second welcome")
	}
}

func TestStreamRefusals(t *testing.T) {
	refuse := func(cc *coordConn, code string) {
		cc.send(wire.StreamMsg{Type: wire.MsgError, Code: code, Error: "because " + code})
		cc.c.Close(websocket.StatusPolicyViolation, code)
	}
	tests := []struct {
		name      string
		script    func(cc *coordConn, n int)
		wrongKey  bool   // the node proves itself to another coordinator key
		wantCode  string // the refusal Run returns or OnDisconnect reports
		permanent bool
	}{
		{
			name:     "removed before the challenge",
			script:   func(cc *coordConn, _ int) { refuse(cc, wire.ErrCodeNodeRemoved) },
			wantCode: wire.ErrCodeNodeRemoved, permanent: true,
		},
		{
			name: "removed after the welcome",
			script: func(cc *coordConn, _ int) {
				if cc.auth() && cc.send(wire.StreamMsg{Type: wire.MsgWelcome}) {
					refuse(cc, wire.ErrCodeNodeRemoved)
				}
			},
			wantCode: wire.ErrCodeNodeRemoved, permanent: true,
		},
		{
			name: "wrong proof",
			script: func(cc *coordConn, _ int) {
				if cc.auth() {
					t.Error("a proof for another coordinator key verified")
				}
			},
			wrongKey: true,
			wantCode: wire.ErrCodeUnauthorized, permanent: true,
		},
		{
			name: "a malformed message is retried",
			script: func(cc *coordConn, n int) {
				if n == 1 {
					cc.send(wire.StreamMsg{Type: wire.MsgChallenge, Challenge: []byte("c")})
					cc.recv()
					refuse(cc, wire.ErrCodeBadRequest)
					return
				}
				if cc.auth() {
					cc.send(wire.StreamMsg{Type: wire.MsgWelcome})
					cc.hold()
				}
			},
			wantCode: wire.ErrCodeBadRequest,
		},
		{
			name: "internal error is retried",
			script: func(cc *coordConn, n int) {
				if !cc.auth() {
					return
				}
				if n == 1 {
					refuse(cc, wire.ErrCodeInternal)
					return
				}
				cc.send(wire.StreamMsg{Type: wire.MsgWelcome})
				cc.hold()
			},
			wantCode: wire.ErrCodeInternal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			co := newCoord(t, tt.script)
			s := co.stream(t)
			if tt.wrongKey {
				s.CoordKey = newKey(t).Public()
			}
			h := newRecorder()
			done := run(t, s, h)

			var err error
			if tt.permanent {
				timeout := time.After(waitFor)
				for err == nil {
					select {
					case err = <-done:
					case e := <-h.events:
						if e.kind != "welcome" {
							t.Fatalf("handler got %s (%v); want Run to end", e.kind, e.err)
						}
					case <-timeout:
						t.Fatalf("Run did not end in %v", waitFor)
					}
				}
			} else {
				err = h.next(t, "disconnect").err
				h.next(t, "welcome")
			}
			var re *RejectedError
			if !errors.As(err, &re) || re.Code != tt.wantCode || re.Reason == "" {
				t.Fatalf("got %v, want the coordinator's %s refusal", err, tt.wantCode)
			}
			if got := errors.As(err, &re) && re.refusesNode(); got != tt.permanent {
				t.Fatalf("refusesNode(%v) = %v", err, got)
			}
		})
	}
}

func TestSendWhileDown(t *testing.T) {
	co := newCoord(t, func(cc *coordConn, _ int) {
		if cc.auth() {
			cc.send(wire.StreamMsg{Type: wire.MsgWelcome})
			cc.c.Close(websocket.StatusGoingAway, "restarting")
		}
	})
	s := co.stream(t)
	s.Backoff = Backoff{Min: time.Hour} // stay down once the stream drops
	msg := wire.StreamMsg{Type: wire.MsgRendezvous, Peer: peerKey(1)}
	if err := s.Send(msg); !errors.Is(err, ErrStreamDown) {
		t.Fatalf("Send before Run = %v, want ErrStreamDown", err)
	}
	h := newRecorder()
	run(t, s, h)
	h.next(t, "welcome")
	h.next(t, "disconnect")
	if s.Connected() {
		t.Fatal("connected after the stream dropped")
	}
	if err := s.Send(msg); !errors.Is(err, ErrStreamDown) {
		t.Fatalf("Send after the stream dropped = %v, want ErrStreamDown", err)
	}
}

// endpoints is an endpoints message that tells its instances apart by port.
func endpoints(port uint16) wire.StreamMsg {
	return wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Kind: wire.EndpointSTUN}}}
}

// paths is a path report whose one entry names peer n.
func paths(n int) wire.StreamMsg {
	return wire.StreamMsg{Type: wire.MsgPaths, Paths: wire.AppendPathReport(nil, []wire.PathEntry{{Peer: *peerKey(n), Kind: wire.PathDirectUDP}})}
}

func rendezvous(peer int) wire.StreamMsg {
	return wire.StreamMsg{Type: wire.MsgRendezvous, Peer: peerKey(peer)}
}

// describe names a message by what the queue policy looks at.
func describe(m wire.StreamMsg) string {
	switch {
	case m.Type == wire.MsgEndpoints && len(m.Endpoints) == 1:
		return "endpoints:" + m.Endpoints[0].Addr.String()
	case m.Type == wire.MsgRendezvous && m.Peer != nil:
		return "rendezvous:" + m.Peer.Short()
	case m.Type == wire.MsgPaths:
		if e, err := wire.ParsePathReport(m.Paths); err == nil && len(e) == 1 {
			return "paths:" + e[0].Peer.Short()
		}
	}
	return m.Type
}

func TestQueuePolicy(t *testing.T) {
	var fill []wire.StreamMsg // a queue full of distinct rendezvous requests
	for i := range MaxQueued {
		fill = append(fill, rendezvous(100+i))
	}
	tests := []struct {
		name      string
		before    []wire.StreamMsg // queued first, all accepted
		send      []wire.StreamMsg
		errs      []error
		want      []wire.StreamMsg // the queue, in order
		coalesced uint64
		dropped   uint64
	}{
		{
			name:      "endpoints replace queued endpoints in place",
			send:      []wire.StreamMsg{endpoints(1), rendezvous(1), endpoints(2), endpoints(3)},
			errs:      []error{nil, nil, nil, nil},
			want:      []wire.StreamMsg{endpoints(3), rendezvous(1)},
			coalesced: 2,
		},
		{
			name:      "paths replace queued paths in place, apart from endpoints",
			send:      []wire.StreamMsg{paths(1), endpoints(1), paths(2)},
			errs:      []error{nil, nil, nil},
			want:      []wire.StreamMsg{paths(2), endpoints(1)},
			coalesced: 1,
		},
		{
			name:      "rendezvous for a queued peer is a duplicate",
			send:      []wire.StreamMsg{rendezvous(1), rendezvous(2), rendezvous(1)},
			errs:      []error{nil, nil, nil},
			want:      []wire.StreamMsg{rendezvous(1), rendezvous(2)},
			coalesced: 1,
		},
		{
			name: "other messages are kept",
			send: []wire.StreamMsg{{Type: wire.MsgError, Code: "a"}, {Type: wire.MsgError, Code: "a"}},
			errs: []error{nil, nil},
			want: []wire.StreamMsg{{Type: wire.MsgError}, {Type: wire.MsgError}},
		},
		{
			name:    "a full queue refuses new messages",
			before:  fill,
			send:    []wire.StreamMsg{rendezvous(1), endpoints(1)},
			errs:    []error{ErrQueueFull, ErrQueueFull},
			want:    fill,
			dropped: 2,
		},
		{
			name:      "a full queue still coalesces",
			before:    append([]wire.StreamMsg{endpoints(1)}, fill[1:]...),
			send:      []wire.StreamMsg{endpoints(2), fill[5]},
			errs:      []error{nil, nil},
			want:      append([]wire.StreamMsg{endpoints(2)}, fill[1:]...),
			coalesced: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st Stats
			sess := newSession()
			put := func(m wire.StreamMsg) error {
				q, err := encode(m)
				if err != nil {
					t.Fatal(err)
				}
				return sess.enqueue(q, &st)
			}
			for _, m := range tt.before {
				if err := put(m); err != nil {
					t.Fatalf("filling the queue: %v", err)
				}
			}
			for i, m := range tt.send {
				if err := put(m); !errors.Is(err, tt.errs[i]) {
					t.Errorf("send %d (%s) = %v, want %v", i, describe(m), err, tt.errs[i])
				}
			}
			var got []string
			for q, ok := sess.next(); ok; q, ok = sess.next() {
				var m wire.StreamMsg
				if err := json.Unmarshal(q.b, &m); err != nil {
					t.Fatal(err)
				}
				got = append(got, describe(m))
			}
			var want []string
			for _, m := range tt.want {
				want = append(want, describe(m))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("queue\n %v\nwant\n %v", got, want)
			}
			if c, d := st.Coalesced.Load(), st.Dropped.Load(); c != tt.coalesced || d != tt.dropped {
				t.Errorf("coalesced %d, dropped %d; want %d, %d", c, d, tt.coalesced, tt.dropped)
			}
		})
	}
}

func TestEndedSessionDiscards(t *testing.T) {
	var st Stats
	sess := newSession()
	for i := range 3 {
		q, _ := encode(rendezvous(i))
		if err := sess.enqueue(q, &st); err != nil {
			t.Fatal(err)
		}
	}
	sess.end(&st)
	if d := st.Dropped.Load(); d != 3 {
		t.Fatalf("dropped %d at the end of the session, want the 3 queued", d)
	}
	if _, ok := sess.next(); ok {
		t.Fatal("the writer still gets a message of an ended session")
	}
	q, _ := encode(rendezvous(9))
	if err := sess.enqueue(q, &st); !errors.Is(err, ErrStreamDown) {
		t.Fatalf("enqueue after the end = %v, want ErrStreamDown", err)
	}
}

// TestSendCoalesces checks what the coordinator receives: what the engine
// sends from OnWelcome waits for the writer, so it is coalesced.
func TestSendCoalesces(t *testing.T) {
	got := make(chan wire.StreamMsg, 16)
	co := newCoord(t, func(cc *coordConn, _ int) {
		if !cc.auth() || !cc.send(wire.StreamMsg{Type: wire.MsgWelcome}) {
			return
		}
		for {
			m, ok := cc.recv()
			if !ok {
				return
			}
			got <- m
		}
	})
	s := co.stream(t)
	h := newRecorder()
	h.onWelcome = func(wire.StreamMsg) {
		for _, m := range []wire.StreamMsg{endpoints(1), rendezvous(1), endpoints(2), rendezvous(1), rendezvous(2), endpoints(3)} {
			if err := s.Send(m); err != nil {
				t.Errorf("Send(%s) = %v", describe(m), err)
			}
		}
	}
	run(t, s, h)
	h.next(t, "welcome")
	want := []wire.StreamMsg{endpoints(3), rendezvous(1), rendezvous(2)}
	// Once the queue is drained, new endpoints go out as they are.
	for i, w := range append(want, endpoints(4)) {
		if i == len(want) {
			wait.For(t, waitFor, "queue drained", func() bool { return s.Stats.Sent.Load() == uint64(len(want)) })
			if err := s.Send(w); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case m := <-got:
			if describe(m) != describe(w) {
				t.Fatalf("coordinator got %s, want %s", describe(m), describe(w))
			}
		case <-time.After(waitFor):
			t.Fatalf("coordinator got no %s in %v", describe(w), waitFor)
		}
	}
	if c, d := s.Stats.Coalesced.Load(), s.Stats.Dropped.Load(); c != 3 || d != 0 {
		t.Fatalf("coalesced %d, dropped %d; want 3, 0", c, d)
	}
}

// stalled starts a coordinator that takes the stream, sends the welcome,
// then stops reading while its TCP connection stays open, and returns the
// node's stream to it, welcomed.
func stalled(t *testing.T, writeTimeout time.Duration) (*Stream, *recorder) {
	co := newCoord(t, func(cc *coordConn, _ int) {
		if cc.auth() && cc.send(wire.StreamMsg{Type: wire.MsgWelcome}) {
			cc.hold()
		}
	})
	s := co.stream(t)
	s.WriteTimeout = writeTimeout
	s.Backoff = Backoff{Min: time.Hour} // one session: its end is the test's
	h := newRecorder()
	run(t, s, h)
	h.next(t, "welcome")
	return s, h
}

// TestSendNeverBlocks is the reason for the writer goroutine: a coordinator
// that stops reading must not hold up Send's callers. The write timeout is
// longer than the test's deadline, so a Send that waited for the network
// would miss it.
func TestSendNeverBlocks(t *testing.T) {
	s, _ := stalled(t, 3*waitFor)
	// Thousands of large messages, and more until the queue has been full
	// many times: the socket buffers have filled and the writer is stuck.
	const minSends, minFull = 2000, 1000
	pad := strings.Repeat("x", 32<<10)
	type tally struct {
		sends, ok, full int
		err             error // other than ErrQueueFull
	}
	sent := make(chan tally, 1)
	go func() {
		var n tally
		for n.sends < minSends || n.full < minFull {
			m := rendezvous(n.sends)
			if n.sends%2 == 0 {
				m = endpoints(uint16(n.sends + 1))
			}
			m.Relay = pad
			n.sends++
			switch err := s.Send(m); {
			case err == nil:
				n.ok++
			case errors.Is(err, ErrQueueFull):
				n.full++
			default:
				n.err = err
				sent <- n
				return
			}
		}
		sent <- n
	}()
	var n tally
	select {
	case n = <-sent:
	case <-time.After(waitFor):
		t.Fatalf("Sends to a stalled coordinator did not return in %v", waitFor)
	}
	if n.err != nil {
		t.Fatalf("Send = %v, want nil or ErrQueueFull", n.err)
	}
	t.Logf("%d sends of %d KiB to a stalled coordinator: %d queued, %d refused (queue full); sent %d, coalesced %d",
		n.sends, len(pad)>>10, n.ok, n.full, s.Stats.Sent.Load(), s.Stats.Coalesced.Load())
	if d := s.Stats.Dropped.Load(); d != uint64(n.full) {
		t.Errorf("dropped %d, want the %d refused", d, n.full)
	}
	if !s.Connected() {
		t.Error("the session ended before its write timeout")
	}
}

// TestWriteTimeoutEndsSession checks that a write the coordinator doesn't
// take ends the session, so Run reconnects.
func TestWriteTimeoutEndsSession(t *testing.T) {
	s, h := stalled(t, 200*time.Millisecond)
	// Large messages fill the socket buffers until the writer blocks.
	big := endpoints(1)
	big.Relay = strings.Repeat("y", 1<<20)
	var down event
	wait.For(t, waitFor, "the session ends on the write timeout", func() bool {
		s.Send(big)
		select {
		case down = <-h.events:
			return true
		default:
			return false
		}
	})
	if down.kind != "disconnect" || !errors.Is(down.err, os.ErrDeadlineExceeded) || !strings.Contains(down.err.Error(), "not written") {
		t.Fatalf("handler got %s (%v), want a disconnect on the write timeout", down.kind, down.err)
	}
	if s.Connected() {
		t.Fatal("connected after the write timeout")
	}
	if err := s.Send(big); !errors.Is(err, ErrStreamDown) {
		t.Fatalf("Send after the write timeout = %v, want ErrStreamDown", err)
	}
	if s.Stats.Dropped.Load() == 0 {
		t.Fatal("the message the write timed out on is not counted as dropped")
	}
}

func TestBackoffBounds(t *testing.T) {
	tests := []struct {
		in             Backoff
		wantLo, wantHi time.Duration
	}{
		{Backoff{}, backoffMin, backoffMax},
		{Backoff{Min: time.Millisecond}, time.Millisecond, backoffMax},
		{Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}, time.Millisecond, 10 * time.Millisecond},
		{Backoff{Min: time.Hour}, time.Hour, time.Hour},
		{Backoff{Min: -1, Max: -1}, backoffMin, backoffMax},
	}
	for _, tt := range tests {
		if lo, hi := tt.in.bounds(); lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("%+v.bounds() = %v, %v; want %v, %v", tt.in, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}

// TestStreamSurvivesRefusedUpdate: a coordinator that refuses an update
// with bad_request (and closes the stream, as the real one does) must not
// stop the node: the stream reconnects and is welcomed again, every time,
// and the refusals are logged at a bounded rate.
func TestStreamSurvivesRefusedUpdate(t *testing.T) {
	co := newCoord(t, func(cc *coordConn, _ int) {
		if !cc.auth() || !cc.send(wire.StreamMsg{Type: wire.MsgWelcome}) {
			return
		}
		for {
			m, ok := cc.recv()
			if !ok {
				return
			}
			if m.Type == wire.MsgEndpoints {
				cc.send(wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: "endpoint \"0.0.0.0:1\" is not a usable address:port"})
				cc.c.Close(websocket.StatusPolicyViolation, "bad endpoints")
				return
			}
		}
	})
	s := co.stream(t)
	logs := &countingHandler{}
	s.Log = slog.New(logs)
	h := newRecorder()
	// The engine sends its candidates after every welcome; these are
	// refused every time.
	h.onWelcome = func(wire.StreamMsg) {
		if err := s.Send(endpoints(1)); err != nil {
			t.Errorf("Send after the welcome: %v", err)
		}
	}
	start := time.Now()
	done := run(t, s, h)

	const refusals = 5
	for i := range refusals {
		h.next(t, "welcome")
		err := h.next(t, "disconnect").err
		var re *RejectedError
		if !errors.As(err, &re) || re.Code != wire.ErrCodeBadRequest {
			t.Fatalf("refusal %d: OnDisconnect got %v, want the coordinator's bad_request", i+1, err)
		}
	}
	// Run would have returned instead of reconnecting: this welcome proves
	// it kept going after every refusal.
	h.next(t, "welcome")
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
	warned := logs.count(slog.LevelWarn, "coordinator refused the session; reconnecting")
	if limit := 1 + int(time.Since(start)/refusalLogEvery); warned < 1 || warned > limit {
		t.Fatalf("%d refusals logged %d warnings, want 1 to %d (one per %v)", refusals, warned, limit, refusalLogEvery)
	}
}

// countingHandler is a slog.Handler that counts records by level and message.
type countingHandler struct {
	mu   sync.Mutex
	seen map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = make(map[string]int)
	}
	h.seen[r.Level.String()+" "+r.Message]++
	return nil
}

func (h *countingHandler) count(level slog.Level, msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[level.String()+" "+msg]
}

// TestReconnectWaits: while the coordinator is unreachable no wait exceeds
// 3.75 s (every node is back within 4 s of its return, however long the
// outage), yet the waits stay spread (no herd); a refused session backs
// off to 30 s, and a welcome starts again at the shortest wait.
func TestReconnectWaits(t *testing.T) {
	const sessions = 2000
	longest := backoffMax * 3 / 2
	tests := []struct {
		name              string
		welcomed, refused bool
		wantLo, wantHi    time.Duration // bounds of every wait after the ramp
		wantSpreadAtLeast time.Duration // max - min of those waits
	}{
		{"unreachable", false, false, backoffMax / 2, longest, backoffMax * 3 / 4},
		{"welcomed then dropped", true, false, backoffMin / 2, backoffMin * 3 / 2, backoffMin * 3 / 4},
		{"refused", false, true, refusedBackoffMax / 2, refusedBackoffMax * 3 / 2, refusedBackoffMax * 3 / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Backoff{}.waits()
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for i := range sessions {
				d := w.next(tt.welcomed, tt.refused)
				if i < 10 { // the ramp
					continue
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			if lo < tt.wantLo || hi >= tt.wantHi {
				t.Errorf("waits %v-%v, want within [%v, %v)", lo, hi, tt.wantLo, tt.wantHi)
			}
			if hi-lo < tt.wantSpreadAtLeast {
				t.Errorf("waits spread over %v only (%v-%v), want at least %v: a fleet would come back at once", hi-lo, lo, hi, tt.wantSpreadAtLeast)
			}
		})
	}
	if longest > 4*time.Second {
		t.Errorf("the longest wait while unreachable is %v: nodes would not be back within 5 s of the coordinator", longest)
	}

	// Refusals raise the wait; the next failure without one brings it
	// back under Max, and a welcome back to Min.
	w := Backoff{}.waits()
	for range 10 {
		w.next(false, true)
	}
	if d := w.next(false, false); d >= longest {
		t.Errorf("wait after refusals then a failed connect = %v, want < %v", d, longest)
	}
	if d := w.next(true, false); d >= backoffMin*3/2 {
		t.Errorf("wait after a welcomed session = %v, want < %v", d, backoffMin*3/2)
	}
}

// resumer is a recorder that holds a map.
type resumer struct {
	*recorder
	held *wire.MapVersion
}

func (r resumer) Holds() *wire.MapVersion { return r.held }

// A handler that holds a map says which in its auth, and gets a resumed
// welcome like any other; one that can't resume says nothing.
func TestStreamSaysWhatItHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(r *recorder) Handler
		want *wire.MapVersion
	}{
		{"resumer", func(r *recorder) Handler { return resumer{r, &wire.MapVersion{Epoch: 7, Version: 42}} }, &wire.MapVersion{Epoch: 7, Version: 42}},
		{"resumer holding none", func(r *recorder) Handler { return resumer{r, nil} }, nil},
		{"plain handler", func(r *recorder) Handler { return r }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			said := make(chan *wire.MapVersion, 1)
			co := newCoord(t, func(cc *coordConn, _ int) {
				if !cc.auth() {
					return
				}
				said <- cc.holds
				cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Resumed: true, Upsert: []wire.Node{{Name: "b", PublicKey: *peerKey(1)}}, Version: 43, Epoch: 7})
				cc.hold()
			})
			s := co.stream(t)
			r := newRecorder()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.Run(ctx, tc.h(r)) //nolint:errcheck // ends with ctx
			}()
			t.Cleanup(func() {
				cancel()
				close(r.stop)
				<-done
			})
			if got := <-said; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("auth says it holds %+v, want %+v", got, tc.want)
			}
			if w := r.next(t, "welcome").msg; !w.Resumed || len(w.Upsert) != 1 || w.Epoch != 7 {
				t.Errorf("welcome %+v", w)
			}
		})
	}
}

// Check asks the welcomed session for a ping at once, at most once a
// wire.StreamCheckGap however often it is called, and not while the stream
// is down.
func TestCheckIsBounded(t *testing.T) {
	var s Stream
	if s.Check() {
		t.Fatal("Check asked for a ping with no session")
	}
	sess := newSession()
	s.sess = sess
	asked := 0
	for range 100 {
		if s.Check() {
			asked++
		}
	}
	if asked != 1 || len(sess.check) != 1 {
		t.Fatalf("100 checks within the gap asked %d times (%d queued), want 1", asked, len(sess.check))
	}
	s.lastCheck = s.lastCheck.Add(-wire.StreamCheckGap)
	<-sess.check
	if !s.Check() || len(sess.check) != 1 {
		t.Fatal("a check after the gap asked for no ping")
	}
}
