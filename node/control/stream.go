package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Stream timing.
const (
	// backoffMin and backoffMax bound the wait between reconnects; full
	// jitter spreads a fleet's reconnects after a coordinator restart
	// (AWS Architecture Blog, "Exponential Backoff and Jitter").
	backoffMin = time.Second
	backoffMax = 30 * time.Second
	// pingInterval probes the stream so a dead coordinator (or a NAT that
	// dropped the TCP flow) is noticed; pingTimeout bounds the answer.
	pingInterval = 15 * time.Second
	pingTimeout  = 10 * time.Second
	// maxMessage bounds one stream message: a full map of a large mesh.
	maxMessage = wire.MaxCoordinatorMessage
)

// Handler receives stream events, in order, from one goroutine.
type Handler interface {
	// OnWelcome gets the full map after each (re)connect.
	OnWelcome(msg wire.StreamMsg)
	// OnPeers gets a delta.
	OnPeers(msg wire.StreamMsg)
	// OnPunch gets a rendezvous cue.
	OnPunch(msg wire.StreamMsg)
	// OnDisconnect reports a dropped stream; Run reconnects.
	OnDisconnect(err error)
}

// Stream keeps the node's stream to the coordinator.
type Stream struct {
	URL      string // the coordinator's https URL
	Client   *http.Client
	Priv     crypto.PrivateKey
	CoordKey crypto.PublicKey
	Log      *slog.Logger

	mu   sync.Mutex
	conn *websocket.Conn
}

// Run connects and reconnects until ctx ends or the coordinator refuses this
// node for good (it was removed), which is returned.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	wait := backoffMin
	for {
		welcomed, err := s.session(ctx, h)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if IsPermanent(err) {
			return err
		}
		h.OnDisconnect(err)
		if welcomed {
			wait = backoffMin
		}
		d := rand.N(wait) + wait/2 // jitter in [wait/2, 3*wait/2)
		s.Log.Warn("coordinator stream down; reconnecting", "err", err, "in", d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, backoffMax)
	}
}

// Send queues a message for the coordinator; it is dropped while the stream
// is down (the engine resends its state after each welcome).
func (s *Stream) Send(ctx context.Context, msg wire.StreamMsg) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return errors.New("coordinator stream is down")
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}

// session runs one connection; it reports whether the welcome arrived.
func (s *Stream) session(ctx context.Context, h Handler) (bool, error) {
	url := strings.TrimSuffix(s.URL, "/") + wire.PathStream
	dctx, cancel := context.WithTimeout(ctx, requestTimeout)
	c, resp, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: streamClient(s.Client)})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return false, &RejectedError{Status: resp.StatusCode, Code: wire.ErrCodeInternal, Reason: fmt.Sprintf("stream refused: HTTP %d", resp.StatusCode)}
		}
		return false, fmt.Errorf("dial %s: %w", url, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessage)
	if err := s.authenticate(ctx, c); err != nil {
		return false, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.keepalive(sctx, c)

	welcomed := false
	for {
		msg, err := read(sctx, c)
		if err != nil {
			s.setConn(nil)
			return welcomed, err
		}
		switch msg.Type {
		case wire.MsgWelcome:
			s.setConn(c)
			welcomed = true
			h.OnWelcome(msg)
		case wire.MsgPeers:
			h.OnPeers(msg)
		case wire.MsgPunch:
			h.OnPunch(msg)
		case wire.MsgError:
			s.setConn(nil)
			return welcomed, &RejectedError{Code: msg.Code, Reason: msg.Error}
		default:
			s.Log.Debug("unknown stream message ignored", "type", msg.Type)
		}
	}
}

// authenticate answers the coordinator's challenge with a proof of this
// node's private key: no bearer secret crosses the wire.
func (s *Stream) authenticate(ctx context.Context, c *websocket.Conn) error {
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
		return err
	}
	pub := s.Priv.Public()
	b, err := json.Marshal(wire.StreamMsg{Type: wire.MsgAuth, PublicKey: &pub, Proof: proof})
	if err != nil {
		return err
	}
	return c.Write(actx, websocket.MessageText, b)
}

func (s *Stream) keepalive(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				c.CloseNow()
				return
			}
		}
	}
}

func (s *Stream) setConn(c *websocket.Conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
}

// Connected reports whether the stream is up.
func (s *Stream) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
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
