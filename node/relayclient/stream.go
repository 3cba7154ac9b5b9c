package relayclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// Stream relay timing.
const (
	// streamPoll is how often an idle stream client checks whether it is
	// needed (the UDP relay unavailable).
	streamPoll = time.Second
	// streamRetry spaces reconnects of a needed stream.
	streamRetry = 2 * time.Second
	// handshakeTimeout bounds dialing and proving the key.
	handshakeTimeout = 10 * time.Second
	// writeTimeout bounds one frame's write, so a stalled TCP connection
	// can't block wireguard-go's send path for long.
	writeTimeout = 2 * time.Second
	// maxFrame bounds a relay frame: a WireGuard packet plus the header.
	maxFrame = wire.MaxRelayFrame
)

// StreamClient relays over a WebSocket to the coordinator's HTTPS port:
// TCP/TLS for networks that block UDP. It implements bind.FrameSender.
type StreamClient struct {
	URL      string // the coordinator's https URL
	Client   *http.Client
	Priv     crypto.PrivateKey
	CoordKey crypto.PublicKey
	Log      *slog.Logger
	// Deliver hands received frames to the Bind (bind.DeliverFrame).
	Deliver func(frame []byte)
	// Routes makes the stream's route (bind.Bind.Stream).
	Routes func(bind.FrameSender, bind.RouteInfo) bind.Route
	// OnChange hears the stream route, or nil when it closes.
	OnChange func(bind.Route)
	// Want reports whether the stream is needed now.
	Want func() bool

	mu   sync.Mutex
	conn *websocket.Conn
}

// SendFrames implements bind.FrameSender.
func (s *StreamClient) SendFrames(frames [][]byte) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return errors.New("relay stream is down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	for _, f := range frames {
		if err := c.Write(ctx, websocket.MessageBinary, f); err != nil {
			return err
		}
	}
	return nil
}

// Run keeps the stream up while it is wanted, until ctx ends.
func (s *StreamClient) Run(ctx context.Context) {
	for {
		wait := streamPoll
		if s.Want() {
			if err := s.session(ctx); err != nil && ctx.Err() == nil {
				s.Log.Warn("relay stream down", "err", err)
			}
			wait = streamRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *StreamClient) session(ctx context.Context) error {
	url := strings.TrimSuffix(s.URL, "/") + wire.PathRelay
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	hc := *s.Client
	hc.Timeout = 0
	c, _, err := websocket.Dial(hctx, url, &websocket.DialOptions{HTTPClient: &hc})
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(maxFrame)
	if err := s.handshake(hctx, c); err != nil {
		return err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	s.Log.Info("relay over TCP bound", "url", url)
	s.OnChange(s.Routes(s, bind.RouteInfo{Kind: bind.KindRelay, Via: url}))
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		s.OnChange(nil)
	}()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		// Close once the UDP relay is back: the stream is only a fallback.
		for sctx.Err() == nil && s.Want() {
			select {
			case <-sctx.Done():
			case <-time.After(streamPoll):
			}
		}
		c.Close(websocket.StatusNormalClosure, "udp relay available")
	}()
	for {
		typ, b, err := c.Read(sctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageBinary {
			s.Deliver(b)
		}
	}
}

// handshake proves this node's key: hello → challenge → auth → ok.
func (s *StreamClient) handshake(ctx context.Context, c *websocket.Conn) error {
	pub := s.Priv.Public()
	if err := c.Write(ctx, websocket.MessageBinary, wire.RelayFrame{Type: wire.RelayHello, Key: pub}.Marshal()); err != nil {
		return err
	}
	f, err := readFrame(ctx, c, wire.RelayChallenge)
	if err != nil {
		return err
	}
	proof, err := crypto.Proof(s.Priv, s.CoordKey, wire.RelayProofLabel, f.Challenge)
	if err != nil {
		return err
	}
	auth := wire.RelayFrame{Type: wire.RelayAuth, Key: pub, Challenge: f.Challenge, Proof: proof}
	if err := c.Write(ctx, websocket.MessageBinary, auth.Marshal()); err != nil {
		return err
	}
	ok, err := readFrame(ctx, c, wire.RelayOK)
	if err != nil {
		return err
	}
	if !bytes.Equal(ok.Challenge, f.Challenge) {
		return errors.New("relay handshake: the OK does not echo our challenge")
	}
	return nil
}

func readFrame(ctx context.Context, c *websocket.Conn, want wire.RelayType) (wire.RelayFrame, error) {
	_, b, err := c.Read(ctx)
	if err != nil {
		return wire.RelayFrame{}, fmt.Errorf("relay handshake: %w", err)
	}
	f, err := wire.ParseRelay(b)
	if err != nil {
		return f, fmt.Errorf("relay handshake: %w", err)
	}
	if f.Type != want {
		return f, fmt.Errorf("relay handshake: got frame type %d, want %d (is this node registered?)", f.Type, want)
	}
	return f, nil
}
