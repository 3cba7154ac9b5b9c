package relayclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// Stream relay limits and timing.
const (
	// handshakeTimeout bounds dialing and proving the key.
	handshakeTimeout = 10 * time.Second
	// streamQueue bounds the frames waiting for a session's writer: two of
	// wireguard-go's send batches. Beyond it frames are dropped, as a full
	// socket buffer drops UDP, so a stalled connection never stalls the
	// sender.
	streamQueue = 2 * conn.IdealBatchSize
	// maxFrame bounds a relay frame: a WireGuard packet plus the header.
	maxFrame = wire.MaxRelayFrame
)

// errStreamDown is returned by SendFrames on a session that has ended.
var errStreamDown = errors.New("relay stream is down")

// errQueueFull is returned by SendFrames when it dropped frames.
var errQueueFull = errors.New("relay stream send queue full: frames dropped")

// streamClient relays over a WebSocket to the coordinator's HTTPS port:
// TCP/TLS for networks that block UDP. Relays runs it only while it is
// wanted (run's context).
type streamClient struct {
	// mu guards baseURL, url and client: the coordinator whose TCP relay
	// the next session dials, which changes when the node's stream fails
	// over (SetCoordinator).
	mu       sync.Mutex
	baseURL  string // the coordinator's HTTPS URL
	url      string // the WebSocket relay's URL
	client   *http.Client
	priv     crypto.PrivateKey
	coordKey crypto.PublicKey
	log      *slog.Logger
	deliver  func(frame []byte)
	timing   Timing // StreamRetry and StreamWrite
	stats    *Stats
	// frames recycles the copies SendFrames queues.
	frames sync.Pool
}

func newStreamClient(o Options, stats *Stats) *streamClient {
	// The client's overall Timeout would cut the long-lived WebSocket;
	// handshakeTimeout bounds the dial instead.
	s := &streamClient{
		priv:     o.Priv,
		coordKey: o.CoordinatorKey,
		log:      o.Log,
		deliver:  o.Deliver,
		timing:   o.Timing,
		stats:    stats,
		frames: sync.Pool{New: func() any {
			// Room for a frame at a 1500-byte MTU; a larger one grows it.
			b := make([]byte, 0, wire.RelayHeaderLen+1500)
			return &b
		}},
	}
	s.set(o.CoordinatorURL, o.HTTPClient)
	return s
}

// set makes the coordinator at url, reached with hc, the one the next
// session dials.
func (s *streamClient) set(url string, hc *http.Client) {
	c := *hc
	c.Timeout = 0
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL, s.url, s.client = url, url+wire.PathRelay, &c
}

// base is the coordinator's HTTPS URL.
func (s *streamClient) base() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// target is the relay's URL and the client that reaches it.
func (s *streamClient) target() (string, *http.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, s.client
}

// run keeps a session up until ctx ends, reconnecting every retry. report
// hears each session as it comes up, and nil when it ends.
func (s *streamClient) run(ctx context.Context, report func(bind.FrameSender)) {
	for {
		if err := s.session(ctx, report); err != nil && ctx.Err() == nil {
			url, _ := s.target()
			s.log.Warn("relay over TCP down", "url", url, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.timing.StreamRetry):
		}
	}
}

// session runs one WebSocket until it fails or ctx ends; then it closes it.
func (s *streamClient) session(ctx context.Context, report func(bind.FrameSender)) error {
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	url, client := s.target()
	c, _, err := websocket.Dial(hctx, url, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	// Waits for the close started below, whoever ends the session.
	defer c.CloseNow()
	c.SetReadLimit(maxFrame)
	if err := s.handshake(hctx, c); err != nil {
		return err
	}

	sctx, end := context.WithCancel(ctx)
	defer end()
	// The stream is only a fallback: once it is no longer wanted, close it
	// cleanly. Close also ends the read below.
	context.AfterFunc(sctx, func() { c.Close(websocket.StatusNormalClosure, "relay stream no longer needed") })
	sess := &streamSession{client: s, c: c, ctx: sctx, queue: make(chan *[]byte, streamQueue)}
	var wg sync.WaitGroup
	wg.Go(func() { sess.writeLoop(end) })

	s.log.Info("relay over TCP bound", "url", url)
	report(sess)
	err = s.readLoop(c)
	end()
	wg.Wait()
	report(nil)
	switch {
	case ctx.Err() != nil:
		return nil
	case sess.werr != nil:
		return sess.werr
	}
	return err
}

// readLoop hands received frames to the Bind until the connection closes.
func (s *streamClient) readLoop(c *websocket.Conn) error {
	for {
		// Not the session's context: cancelling a read would cut the
		// connection short of the close handshake.
		typ, b, err := c.Read(context.Background())
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if typ == websocket.MessageBinary {
			s.deliver(b)
		}
	}
}

// handshake proves this node's key: hello → challenge → auth → ok.
func (s *streamClient) handshake(ctx context.Context, c *websocket.Conn) error {
	pub := s.priv.Public()
	if err := c.Write(ctx, websocket.MessageBinary, wire.RelayFrame{Type: wire.RelayHello, Key: pub}.Marshal()); err != nil {
		return fmt.Errorf("relay handshake: %w", err)
	}
	f, err := readFrame(ctx, c, wire.RelayChallenge)
	if err != nil {
		return err
	}
	proof, err := crypto.Proof(s.priv, s.coordKey, wire.RelayProofLabel, f.Challenge)
	if err != nil {
		return fmt.Errorf("relay handshake: %w", err)
	}
	auth := wire.RelayFrame{Type: wire.RelayAuth, Key: pub, Challenge: f.Challenge, Proof: proof}
	if err := c.Write(ctx, websocket.MessageBinary, auth.Marshal()); err != nil {
		return fmt.Errorf("relay handshake: %w", err)
	}
	ok, err := readFrame(ctx, c, wire.RelayOK)
	if err != nil {
		return err
	}
	if !bytes.Equal(ok.Challenge, f.Challenge) {
		return errors.New("relay handshake: the OK does not echo our challenge")
	}
	if !crypto.VerifyProof(s.priv, s.coordKey, wire.RelayOKProofLabel, f.Challenge, ok.Proof) {
		return errors.New("relay handshake: the OK does not prove the relay's key")
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

// streamSession is one bound WebSocket; it implements bind.FrameSender.
// Frames go through a bounded queue to the session's one writer, so a
// sender never waits on TCP.
type streamSession struct {
	client *streamClient
	c      *websocket.Conn
	ctx    context.Context // ends with the session
	queue  chan *[]byte
	werr   error // why the writer ended the session; read after it exits
}

// SendFrames queues copies of frames (the caller reuses its buffers) and
// returns at once; frames that find the queue full are dropped and counted.
func (s *streamSession) SendFrames(frames [][]byte) error {
	if s.ctx.Err() != nil {
		return errStreamDown
	}
	dropped := 0
	for _, f := range frames {
		b := s.client.frames.Get().(*[]byte)
		*b = append((*b)[:0], f...)
		select {
		case s.queue <- b:
		default:
			s.client.frames.Put(b)
			dropped++
		}
	}
	if dropped > 0 {
		s.client.stats.StreamDropped.Add(uint64(dropped))
		return errQueueFull
	}
	return nil
}

// writeLoop writes queued frames until the session ends; a failed or
// stalled write ends it.
func (s *streamSession) writeLoop(end context.CancelFunc) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case b := <-s.queue:
			wctx, cancel := context.WithTimeout(s.ctx, s.client.timing.StreamWrite)
			err := s.c.Write(wctx, websocket.MessageBinary, *b)
			cancel()
			s.client.frames.Put(b)
			if err != nil {
				s.werr = fmt.Errorf("write: %w", err)
				end()
				return
			}
		}
	}
}
