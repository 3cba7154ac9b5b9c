package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Stream timing and bounds.
const (
	// deltaCoalesce gathers a burst of changes (a node connecting then
	// reporting its endpoints, many nodes joining at once) into one peers
	// message; far below the one-second delivery promise.
	deltaCoalesce = 50 * time.Millisecond
	// writeTimeout bounds one message write; a node that can't take a
	// message in this time is treated as gone.
	writeTimeout = 10 * time.Second
	// pingInterval detects dead streams (a vanished NAT mapping, a crashed
	// node) well before TCP would, and keeps middlebox state alive; 15 s is
	// below common 30 s NAT/proxy idle timeouts.
	pingInterval = 15 * time.Second
	// pingTimeout is how long a pong may take before the stream is dropped.
	pingTimeout = 10 * time.Second
	// maxQueued bounds non-delta messages waiting for a slow node; past it
	// the stream is closed and the node resumes with a fresh welcome.
	maxQueued = 64
)

// WebSocket close codes (RFC 6455 §7.4.2 leaves 4000-4999 to applications).
const (
	closeReplaced websocket.StatusCode = 4000 // a newer stream from the same key took over
	closeRemoved  websocket.StatusCode = 4001 // the node was removed from the mesh
	closeSlow     websocket.StatusCode = 4002 // the node didn't keep up with its messages
)

// session is one node's stream. The hub queues deltas and messages into it
// under the hub's lock; the session's writer sends them.
type session struct {
	key crypto.PublicKey
	// tcp is the stream's source as seen here: the node's public TCP
	// mapping, offered to peers as a TCP hole-punching candidate.
	tcp netip.AddrPort
	// relay is the UDP relay the node announces, offered to peers only
	// while the node holds RelayTag; guarded by the hub's lock.
	relay  netip.AddrPort
	conn   *websocket.Conn
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: something to send

	mu      sync.Mutex
	queue   []wire.StreamMsg
	ups     map[crypto.PublicKey]wire.Node
	rems    map[crypto.PublicKey]struct{}
	version uint64
	final   *closing
}

// closing is how a session ends on the coordinator's initiative.
type closing struct {
	msg    *wire.StreamMsg // sent before the close frame, if set
	code   websocket.StatusCode
	reason string
}

func newSession(key crypto.PublicKey, tcp netip.AddrPort, conn *websocket.Conn, cancel context.CancelFunc) *session {
	return &session{
		tcp:    tcp,
		key:    key,
		conn:   conn,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		ups:    make(map[crypto.PublicKey]wire.Node),
		rems:   make(map[crypto.PublicKey]struct{}),
	}
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// upsert queues a peer's new state; the latest state of a peer wins.
func (s *session) upsert(n wire.Node, version uint64) {
	s.mu.Lock()
	delete(s.rems, n.PublicKey)
	s.ups[n.PublicKey] = n
	s.version = version
	s.mu.Unlock()
	s.signal()
}

// removePeer queues a peer's removal, cancelling a queued upsert of it.
func (s *session) removePeer(key crypto.PublicKey, version uint64) {
	s.mu.Lock()
	delete(s.ups, key)
	s.rems[key] = struct{}{}
	s.version = version
	s.mu.Unlock()
	s.signal()
}

// send queues a message to go out at once.
func (s *session) send(m wire.StreamMsg) {
	s.mu.Lock()
	if len(s.queue) >= maxQueued {
		s.mu.Unlock()
		s.stop(closeSlow, "too many queued messages; reconnect", nil)
		return
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	s.signal()
}

// stop ends the session after sending what is queued, then msg, then a
// close frame. The first stop wins.
func (s *session) stop(code websocket.StatusCode, reason string, msg *wire.StreamMsg) {
	s.mu.Lock()
	if s.final == nil {
		s.final = &closing{msg: msg, code: code, reason: reason}
	}
	s.mu.Unlock()
	s.signal()
}

// urgent reports whether something must go out without coalescing.
func (s *session) urgent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.final != nil
}

// take empties the session's queues.
func (s *session) take() (delta *wire.StreamMsg, queue []wire.StreamMsg, final *closing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ups) > 0 || len(s.rems) > 0 {
		delta = &wire.StreamMsg{Type: wire.MsgPeers, Version: s.version}
		for _, n := range s.ups {
			delta.Upsert = append(delta.Upsert, n)
		}
		for k := range s.rems {
			delta.Remove = append(delta.Remove, k)
		}
		clear(s.ups)
		clear(s.rems)
	}
	queue, s.queue = s.queue, nil
	return delta, queue, s.final
}

// writeLoop sends deltas (coalesced for deltaCoalesce), then queued
// messages, until ctx is done, a write fails or the session is stopped.
func (s *session) writeLoop(ctx context.Context, w *writer) {
	defer s.cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if !s.coalesce(ctx) {
			return
		}
		delta, queue, final := s.take()
		// The delta goes first: a punch may name a peer the delta adds.
		if delta != nil {
			if w.write(ctx, s.conn, *delta) != nil {
				return
			}
		}
		for _, m := range queue {
			if w.write(ctx, s.conn, m) != nil {
				return
			}
		}
		if final != nil {
			if final.msg != nil {
				w.write(ctx, s.conn, *final.msg) //nolint:errcheck // closing anyway
			}
			s.conn.Close(final.code, final.reason) //nolint:errcheck // the stream is over either way
			return
		}
	}
}

// coalesce waits deltaCoalesce for more changes unless something urgent is
// queued. It returns false when ctx is done.
func (s *session) coalesce(ctx context.Context) bool {
	if s.urgent() {
		return true
	}
	t := time.NewTimer(deltaCoalesce)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-s.wake:
			if s.urgent() {
				return true
			}
		}
	}
}

// pingLoop drops the stream when the node stops answering pings.
func (s *session) pingLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := s.conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Info("stream dead: no pong", "node", s.key.Short(), "err", err)
			}
			s.cancel()
			return
		}
	}
}

// writer writes stream messages and counts them.
type writer struct {
	count func(typ string)
}

func (w *writer) write(ctx context.Context, c *websocket.Conn, m wire.StreamMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	w.count(m.Type)
	return nil
}
