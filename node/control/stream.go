package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Stream timing and bounds.
const (
	// backoffMin and backoffMax bound the wait between reconnects while
	// the coordinator is unreachable: the wait w doubles from backoffMin
	// to backoffMax, and each one is drawn from [w/2, 3w/2) (jitter). So
	// the waits are 0.5-1.5 s, 1-3 s, then 1.25-3.75 s for as long as the
	// outage lasts:
	//   - the longest wait, 3.75 s, bounds how long a node stays away once
	//     the coordinator answers again: every node is back within 4 s
	//     (the dial, TLS and the welcome take milliseconds), where a 30 s
	//     cap left nodes away for up to 45 s after a long outage;
	//   - the jitter keeps a fleet from coming back at once (AWS
	//     Architecture Blog, "Exponential Backoff and Jitter"): a restart
	//     drops every stream at the same moment, and the first retries
	//     spread over a second; during a long outage each node's attempts
	//     drift apart by up to 2.5 s each time, so when the coordinator
	//     returns N nodes arrive at about N/2.5 per second (10,000 nodes:
	//     4,000 TLS handshakes a second) rather than in one burst;
	//   - an attempt at a coordinator that is down costs one refused TCP
	//     connect, so one every 2.5 s on average costs nothing.
	backoffMin = time.Second
	backoffMax = 2500 * time.Millisecond
	// refusedBackoffMax bounds the wait after a session that ended in a
	// refusal (not of the node itself: see refusesNode): the coordinator
	// is up and answered, and answers the same sooner or later, so such a
	// node keeps backing off, up to 30 s, instead of retrying a refused
	// session every few seconds.
	refusedBackoffMax = 30 * time.Second
	// pingInterval probes the stream so a dead coordinator (or a NAT that
	// dropped the TCP flow) is noticed, and keeps the flow's NAT state; the
	// node is the only end that pings (wire.StreamPing). pingTimeout bounds
	// the answer.
	pingInterval = wire.StreamPing
	pingTimeout  = 10 * time.Second
	// maxMessage bounds one stream message: a full map of a large mesh.
	maxMessage = wire.MaxCoordinatorMessage
	// MaxQueued bounds the messages waiting for one session's writer. The
	// node sends little (its candidates, rendezvous requests for the peers
	// it is trying to reach), so a full queue means the coordinator has
	// stopped taking messages.
	MaxQueued = 64
)

// Errors of Send.
var (
	// ErrStreamDown is returned while no session is welcomed: the message is
	// not kept, since the engine resends its state after every welcome.
	ErrStreamDown = errors.New("coordinator stream is down")
	// ErrQueueFull is returned when MaxQueued messages already wait for the
	// writer; the message is dropped and counted in Stats.Dropped.
	ErrQueueFull = errors.New("coordinator stream queue is full")
)

// Handler receives stream events, in order, from one goroutine: the
// stream's reader.
type Handler interface {
	// OnWelcome gets the full map after each (re)connect, or what
	// changed since the map it holds (Resumer).
	OnWelcome(msg wire.StreamMsg)
	// OnPeers gets a delta.
	OnPeers(msg wire.StreamMsg)
	// OnPunch gets a rendezvous cue.
	OnPunch(msg wire.StreamMsg)
	// OnDisconnect reports a dropped stream; Run reconnects.
	OnDisconnect(err error)
}

// Resumer is a Handler that keeps the map version it holds: it says so
// when the stream reconnects (wire.StreamMsg.Holds), and must then take
// a welcome that is Resumed (only what changed since) as well as a full
// one. A Handler without it gets the full map on every connect.
type Resumer interface {
	// Holds is the map it holds; nil: none.
	Holds() *wire.MapVersion
}

// Backoff bounds the wait between reconnects: it starts at Min, doubles
// after each attempt up to Max (up to 30 s, or Max if larger, after a
// session the coordinator refused), and is back at Min once a session was
// welcomed. Each wait is jittered by ±50%.
type Backoff struct {
	Min, Max time.Duration
}

// bounds returns Min and Max with defaults for the unset ones; Max is at
// least Min.
func (b Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = backoffMin
	}
	if hi <= 0 {
		hi = backoffMax
	}
	return lo, max(hi, lo)
}

// waits is Run's schedule of waits between sessions.
type waits struct {
	lo, hi, wait time.Duration
}

func (b Backoff) waits() *waits {
	lo, hi := b.bounds()
	return &waits{lo: lo, hi: hi, wait: lo}
}

// next returns the wait after a session that was welcomed or not, and
// ended in a refusal or not: a welcome (without a refusal) starts again
// at Min, a refusal lets the wait grow to refusedBackoffMax (or Max if
// larger), anything else to Max. The wait is drawn from [w/2, 3w/2).
func (w *waits) next(welcomed, refused bool) time.Duration {
	if welcomed && !refused {
		w.wait = w.lo
	}
	limit := w.hi
	if refused {
		limit = max(w.hi, refusedBackoffMax)
	}
	w.wait = min(w.wait, limit)
	d := rand.N(w.wait) + w.wait/2
	w.wait = min(w.wait*2, limit)
	return d
}

// Stats counts what the stream did with the messages given to Send;
// messages refused with ErrStreamDown are not counted.
type Stats struct {
	// Sent counts messages written to the coordinator.
	Sent atomic.Uint64
	// Coalesced counts messages superseded while queued: an endpoints or
	// paths message replaced by a newer one, a repeated rendezvous request.
	Coalesced atomic.Uint64
	// Dropped counts messages lost: refused with ErrQueueFull, or still
	// queued when their session ended.
	Dropped atomic.Uint64
	// Checks counts the pings Check asked for.
	Checks atomic.Uint64
}

// Stream keeps the node's stream to the coordinator.
//
// Each connection has one reader goroutine, which runs the Handler, and one
// writer goroutine, fed by Send through a queue of at most MaxQueued
// messages, so a coordinator that stops reading never holds up the caller
// of Send. While queued, an endpoints or paths message replaces any queued
// one of its type (only the latest candidates and paths matter) and a
// rendezvous request for a peer already queued is dropped as a duplicate.
// A write that fails or
// takes longer than WriteTimeout ends the session; Run then reconnects.
// What is still queued when a session ends is discarded: the engine resends
// its state after every welcome.
type Stream struct {
	// Coordinators are the mesh's coordinators, the first dialled first;
	// SetCoordinators replaces them (each welcome does). When a session
	// fails, or a welcomed one ends, the next goes to another of them,
	// drawn at random among those that have not failed since the last
	// welcome (pick): the nodes of a dead coordinator spread over the
	// survivors, and a node stays with whichever works.
	Coordinators []crypto.Coordinator
	// Client makes the HTTP client for a coordinator's pin: each
	// coordinator has its own certificate. Nil: NewHTTPClient.
	Client   func(pin string) *http.Client
	Priv     crypto.PrivateKey
	CoordKey crypto.PublicKey
	Log      *slog.Logger
	// Backoff bounds the wait between reconnects; a zero field takes its
	// default, one second and 2.5 seconds.
	Backoff Backoff
	// WriteTimeout bounds one message write; zero means 15 seconds.
	WriteTimeout time.Duration

	// Stats counts the messages given to Send.
	Stats Stats

	mu   sync.Mutex
	sess *session // the welcomed session; nil while down
	// targets are the coordinators, cur the index of the one dialled
	// (-1: none yet, or it is no longer listed), failed those whose
	// session failed and unauthorized those that refused this node's key
	// since the last welcome, clients each pin's client.
	targets      []crypto.Coordinator
	cur          int
	failed       map[string]bool
	unauthorized map[string]bool
	clients      map[string]*http.Client
	// lastCheck is when Check last asked the session for a ping.
	lastCheck time.Time
}

// Check asks the welcomed session to ping the coordinator now, with
// wire.StreamCheckTimeout to answer, when a peer says the coordinator
// shows this node offline (path.EventCoordinatorDoubted): a coordinator
// whose host is lost or whose process hangs answers nothing, and the
// session ends and fails over to another, instead of at the next ping, up
// to pingInterval and pingTimeout later. A live one answers and nothing
// changes. At most one check a wire.StreamCheckGap, however many peers
// ask; it reports whether it asked.
func (s *Stream) Check() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.sess == nil || (!s.lastCheck.IsZero() && now.Sub(s.lastCheck) < wire.StreamCheckGap) {
		return false
	}
	s.lastCheck = now
	s.Stats.Checks.Add(1)
	select {
	case s.sess.check <- struct{}{}:
	default:
	}
	return true
}

// Run connects and reconnects until ctx ends or the coordinators refuse
// this node itself (it was removed, or every known coordinator refused
// its key), which is returned. Any other refusal, such as a bad_request about one message, is
// logged at a bounded rate and the stream reconnects; a session that ended
// in a refusal doesn't reset the backoff, and lets it grow to 30 s, so a
// node whose every session is refused settles at one attempt per 30 s.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	waits := s.Backoff.waits()
	var refusals refusalLog
	s.mu.Lock()
	if s.targets == nil {
		s.targets, s.cur = slices.Clone(s.Coordinators), 0
	}
	s.mu.Unlock()
	for {
		target, client, err := s.target()
		if err != nil {
			return err
		}
		welcomed, err := s.session(ctx, h, target, client)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var refused *RejectedError
		if errors.As(err, &refused) && refused.refusesNode() && s.refusedByAll(target.URL, refused) {
			return err
		}
		h.OnDisconnect(err)
		d := waits.next(welcomed, refused != nil)
		next := s.pick(target.URL)
		if refused != nil {
			refusals.log(s.Log, refused, d, time.Now())
		} else {
			s.Log.Warn("coordinator stream down; reconnecting", "coordinator", target.URL, "err", err, "next", next, "in", d.Round(time.Millisecond))
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Send queues msg for the coordinator and returns at once: it never waits
// for the network. It returns ErrStreamDown while no session is welcomed
// and ErrQueueFull when the queue is full; a message the queue coalesces
// (see Stream) is not an error. msg is encoded before Send returns, so the
// caller may reuse what it refers to.
func (s *Stream) Send(msg wire.StreamMsg) error {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess == nil {
		return ErrStreamDown
	}
	q, err := encode(msg)
	if err != nil {
		return err
	}
	return sess.enqueue(q, &s.Stats)
}

// Connected reports whether the stream is up.
func (s *Stream) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess != nil
}

// Current is the URL of the coordinator the stream is connected to, ""
// while it is down, and how many coordinators the stream knows.
func (s *Stream) Current() (url string, known int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known = len(s.targets)
	if s.targets == nil {
		known = len(s.Coordinators)
	}
	if s.sess == nil || s.sess.coordinator == "" {
		return "", known
	}
	return s.sess.coordinator, known
}

// Known lists the coordinators the stream chooses from.
func (s *Stream) Known() []crypto.Coordinator {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.targets == nil {
		return slices.Clone(s.Coordinators)
	}
	return slices.Clone(s.targets)
}

// SetCoordinators replaces the coordinators the stream chooses from (a
// welcome's list); the one connected to stays current when it is listed.
// list must be valid (crypto.ValidateCoordinators).
func (s *Stream) SetCoordinators(list []crypto.Coordinator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := ""
	if s.cur >= 0 && s.cur < len(s.targets) {
		cur = s.targets[s.cur].URL
	}
	s.targets = slices.Clone(list)
	s.cur = slices.IndexFunc(s.targets, func(c crypto.Coordinator) bool { return c.URL == cur })
	for pin, hc := range s.clients {
		if !slices.ContainsFunc(s.targets, func(c crypto.Coordinator) bool { return c.Pin == pin }) {
			hc.CloseIdleConnections()
			delete(s.clients, pin)
		}
	}
}

// target is the coordinator to dial next and the client for its pin.
func (s *Stream) target() (crypto.Coordinator, *http.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.targets) == 0 {
		return crypto.Coordinator{}, nil, errors.New("stream: no coordinator to connect to")
	}
	if s.cur < 0 || s.cur >= len(s.targets) {
		s.cur = rand.N(len(s.targets))
	}
	c := s.targets[s.cur]
	hc := s.clients[c.Pin]
	if hc == nil {
		if s.Client != nil {
			hc = s.Client(c.Pin)
		} else {
			hc = NewHTTPClient(c.Pin)
		}
		if s.clients == nil {
			s.clients = make(map[string]*http.Client)
		}
		s.clients[c.Pin] = hc
	}
	return c, hc, nil
}

// pick chooses the coordinator for the next session after one with
// failedURL ended, and returns its URL: at random among those that have
// not failed since the last welcome, failedURL excluded; when every one
// has, among all but failedURL; failedURL itself only when it is the
// only one.
func (s *Stream) pick(failedURL string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = make(map[string]bool)
	}
	s.failed[failedURL] = true
	var fresh, others []int
	for i, c := range s.targets {
		switch {
		case c.URL == failedURL:
		case !s.failed[c.URL]:
			fresh = append(fresh, i)
			others = append(others, i)
		default:
			others = append(others, i)
		}
	}
	switch {
	case len(fresh) > 0:
		s.cur = fresh[rand.N(len(fresh))]
	case len(others) > 0:
		clear(s.failed)
		s.failed[failedURL] = true
		s.cur = others[rand.N(len(others))]
	default:
		s.cur = slices.IndexFunc(s.targets, func(c crypto.Coordinator) bool { return c.URL == failedURL })
	}
	if s.cur < 0 {
		return ""
	}
	return s.targets[s.cur].URL
}

// refusedByAll records that the coordinator at url refused this node
// itself, and reports whether that ends the stream: a removal does (the
// coordinators share the database, so every one says the same), as
// does a key refused as unauthorized by every coordinator known. One
// coordinator that refuses the key while others may accept it (one on
// another database, or with another key) is passed over like one that
// is down, so it can't stop the node.
func (s *Stream) refusedByAll(url string, refused *RejectedError) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if refused.Code != wire.ErrCodeUnauthorized {
		return true
	}
	if s.unauthorized == nil {
		s.unauthorized = make(map[string]bool)
	}
	s.unauthorized[url] = true
	for _, c := range s.targets {
		if !s.unauthorized[c.URL] {
			return false
		}
	}
	return true
}

// welcomedBy records that the coordinator at url welcomed sess: every
// coordinator may be tried again after the next failure.
func (s *Stream) welcomedBy(sess *session, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.failed)
	clear(s.unauthorized)
	sess.coordinator = url
	s.sess = sess
}

// session runs one connection to target; it reports whether the welcome
// arrived.
func (s *Stream) session(ctx context.Context, h Handler, target crypto.Coordinator, client *http.Client) (bool, error) {
	url := strings.TrimSuffix(target.URL, "/") + wire.PathStream
	dctx, cancel := context.WithTimeout(ctx, requestTimeout)
	c, resp, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: streamClient(client)})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return false, &RejectedError{Status: resp.StatusCode, Code: wire.ErrCodeInternal, Reason: fmt.Sprintf("stream refused: HTTP %d", resp.StatusCode)}
		}
		return false, fmt.Errorf("dial %s: %w", url, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessage)
	var holds *wire.MapVersion
	if r, ok := h.(Resumer); ok {
		holds = r.Holds()
	}
	if err := s.authenticate(ctx, c, holds); err != nil {
		return false, err
	}

	// The writer and the keepalive end the session by cancelling sctx
	// with the reason, which the reader then returns.
	sctx, stop := context.WithCancelCause(ctx)
	sess := newSession()
	var wg sync.WaitGroup
	defer func() {
		s.detach(sess)
		stop(nil)
		c.CloseNow()
		wg.Wait()
	}()
	wg.Go(func() { keepalive(sctx, c, stop, sess.check) })

	welcomed := false
	for {
		msg, err := read(sctx, c)
		if err != nil {
			if cause := context.Cause(sctx); sctx.Err() != nil && ctx.Err() == nil {
				err = cause
			}
			return welcomed, err
		}
		switch msg.Type {
		case wire.MsgWelcome:
			s.welcomedBy(sess, target.URL)
			h.OnWelcome(msg)
			if !welcomed {
				// Started after OnWelcome, so what the engine resends
				// from it is coalesced before the first write.
				wg.Go(func() { s.writeLoop(sctx, c, sess, stop) })
			}
			welcomed = true
		case wire.MsgPeers:
			h.OnPeers(msg)
		case wire.MsgPunch:
			h.OnPunch(msg)
		case wire.MsgError:
			return welcomed, &RejectedError{Code: msg.Code, Reason: msg.Error}
		default:
			s.Log.Debug("unknown stream message ignored", "type", msg.Type)
		}
	}
}

// detach stops Send feeding sess and discards what it still holds.
func (s *Stream) detach(sess *session) {
	s.mu.Lock()
	if s.sess == sess {
		s.sess = nil
	}
	s.mu.Unlock()
	sess.end(&s.Stats)
}

// writeLoop writes queued messages until the session ends. A write that
// fails or takes longer than the write timeout ends the session.
func (s *Stream) writeLoop(ctx context.Context, c *websocket.Conn, sess *session, stop context.CancelCauseFunc) {
	timeout := s.WriteTimeout
	if timeout <= 0 {
		timeout = requestTimeout
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sess.wake:
		}
		for {
			q, ok := sess.next()
			if !ok {
				break
			}
			err := within(timeout, stop, q.typ+" message not written", func() error {
				return c.Write(ctx, websocket.MessageText, q.b)
			})
			if err != nil {
				s.Stats.Dropped.Add(1)
				stop(fmt.Errorf("stream: write %s message: %w", q.typ, err))
				c.CloseNow()
				return
			}
			s.Stats.Sent.Add(1)
		}
	}
}

// within runs f, which returns once the session's context is cancelled.
// When f takes longer than d, within ends the session with a timeout error
// saying what was late. The error is recorded before the connection
// closes, so the reader reports it rather than the closed connection it
// then sees.
func within(d time.Duration, stop context.CancelCauseFunc, what string, f func() error) error {
	t := time.AfterFunc(d, func() {
		stop(fmt.Errorf("stream: %s in %v: %w", what, d, os.ErrDeadlineExceeded))
	})
	defer t.Stop()
	return f()
}

// authenticate answers the coordinator's challenge with a proof of this
// node's private key (no bearer secret crosses the wire), and the map it
// holds (nil: none).
func (s *Stream) authenticate(ctx context.Context, c *websocket.Conn, holds *wire.MapVersion) error {
	actx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	msg, err := read(actx, c)
	if err != nil {
		return fmt.Errorf("stream: waiting for challenge: %w", err)
	}
	if msg.Type == wire.MsgError {
		return &RejectedError{Code: msg.Code, Reason: msg.Error}
	}
	if msg.Type != wire.MsgChallenge || len(msg.Challenge) == 0 {
		return fmt.Errorf("stream: want a challenge, got %q", msg.Type)
	}
	proof, err := crypto.Proof(s.Priv, s.CoordKey, wire.ProofLabel, msg.Challenge)
	if err != nil {
		return fmt.Errorf("stream: prove the node key: %w", err)
	}
	pub := s.Priv.Public()
	b, err := json.Marshal(wire.StreamMsg{Type: wire.MsgAuth, PublicKey: &pub, Proof: proof, Holds: holds})
	if err != nil {
		return fmt.Errorf("stream: encode auth: %w", err)
	}
	if err := c.Write(actx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("stream: send auth: %w", err)
	}
	return nil
}

// keepalive ends the session when a ping goes unanswered: one every
// pingInterval, and one at once for each check (Stream.Check), which has
// less time to be answered.
func keepalive(ctx context.Context, c *websocket.Conn, stop context.CancelCauseFunc, check <-chan struct{}) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		timeout, what := pingTimeout, "ping not answered"
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-check:
			timeout, what = wire.StreamCheckTimeout, "check asked for by a peer: ping not answered"
		}
		if err := within(timeout, stop, what, func() error { return c.Ping(ctx) }); err != nil {
			stop(fmt.Errorf("stream: ping: %w", err))
			c.CloseNow()
			return
		}
	}
}

// queued is one encoded message waiting for the writer, with what the queue
// policy looks at.
type queued struct {
	typ  string
	peer crypto.PublicKey // rendezvous: the peer asked for
	b    []byte
}

func encode(msg wire.StreamMsg) (queued, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return queued{}, fmt.Errorf("encode %s message: %w", msg.Type, err)
	}
	q := queued{typ: msg.Type, b: b}
	if msg.Peer != nil {
		q.peer = *msg.Peer
	}
	return q, nil
}

// session is one connection's queue, between Send and its writer.
type session struct {
	wake  chan struct{} // capacity 1: something is queued
	check chan struct{} // capacity 1: a check is asked for (Stream.Check)
	// coordinator is the URL of the coordinator that welcomed it; set
	// under Stream.mu.
	coordinator string

	mu    sync.Mutex
	queue []queued
	ended bool
}

func newSession() *session {
	return &session{wake: make(chan struct{}, 1), check: make(chan struct{}, 1)}
}

// enqueue applies the queue policy (see Stream) to q.
func (s *session) enqueue(q queued, st *Stats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrStreamDown
	}
	for i, old := range s.queue {
		switch {
		case q.typ == old.typ && (q.typ == wire.MsgEndpoints || q.typ == wire.MsgPaths):
			s.queue[i] = q
			st.Coalesced.Add(1)
			return nil
		case q.typ == wire.MsgRendezvous && old.typ == wire.MsgRendezvous && q.peer == old.peer:
			st.Coalesced.Add(1)
			return nil
		}
	}
	if len(s.queue) >= MaxQueued {
		st.Dropped.Add(1)
		return ErrQueueFull
	}
	s.queue = append(s.queue, q)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// next takes the oldest queued message; messages stay in the queue until
// the writer is ready for them, so they can still be coalesced.
func (s *session) next() (queued, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return queued{}, false
	}
	q := s.queue[0]
	s.queue[0] = queued{}
	s.queue = s.queue[1:]
	return q, true
}

// end refuses further messages and discards the queued ones.
func (s *session) end(st *Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	st.Dropped.Add(uint64(len(s.queue)))
	s.queue = nil
}

func read(ctx context.Context, c *websocket.Conn) (wire.StreamMsg, error) {
	var msg wire.StreamMsg
	_, b, err := c.Read(ctx)
	if err != nil {
		return msg, err
	}
	if err := json.Unmarshal(b, &msg); err != nil {
		return msg, fmt.Errorf("stream: bad message: %w", err)
	}
	return msg, nil
}

// streamClient drops the request timeout: the stream is long-lived.
func streamClient(hc *http.Client) *http.Client {
	c := *hc
	c.Timeout = 0
	return &c
}
