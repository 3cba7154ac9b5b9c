package relay

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/internal/admit"
)

// WebSocket limits and timing.
const (
	// maxWSConns caps open relay WebSockets (bound or not); more get 503.
	// The server in front (the coordinator's admit.Gate) keeps those not
	// yet bound well below it, so that strangers can't fill it.
	maxWSConns = 4096
	// wsAuthTimeout closes a WebSocket that hasn't bound by then: a node
	// sends its hello at once (a round trip to the challenge, one to the
	// OK), so this only frees idle sockets.
	wsAuthTimeout = 5 * time.Second
	// wsPingInterval spaces the relay's pings on a bound WebSocket. The
	// socket, not refreshes, keeps a WebSocket binding alive (the node's
	// stream client proves its key once per connection), so pings find
	// dead peers; 15 s also keeps proxies with 30-60 s idle timeouts from
	// cutting a quiet socket.
	wsPingInterval = 15 * time.Second
	// wsPingTimeout closes a WebSocket whose peer doesn't answer a ping.
	wsPingTimeout = 10 * time.Second
	// wsQueueBytes bounds what waits for one slow WebSocket reader: about
	// 180 MTU-sized WireGuard packets, enough to absorb a TCP window's
	// burst from a UDP-side peer (64 KiB measured 3 Mbit/s in the NAT lab:
	// every burst overflowed). Beyond it frames are dropped (queue_full),
	// so forwarding never blocks on a TCP peer; at the 4096-socket cap the
	// worst case is 1 GiB.
	wsQueueBytes = 256 << 10
	// wsQueueFrames bounds the queue's length for small frames.
	wsQueueFrames = 1024
	// wsWriteTimeout closes a WebSocket whose peer stops reading.
	wsWriteTimeout = 10 * time.Second
)

// wsConn is one relay WebSocket. Frames to it go through a bounded queue
// drained by its own writer, so the UDP read loop never waits on TCP.
type wsConn struct {
	conn   *websocket.Conn
	queue  chan []byte
	queued atomic.Int64 // bytes in queue
	bound  atomic.Bool  // a binding points at this socket
	cancel context.CancelFunc
}

// enqueue hands frame (which it now owns) to the writer, or drops it.
func (w *wsConn) enqueue(frame []byte) result {
	n := int64(len(frame))
	if w.queued.Add(n) > wsQueueBytes {
		w.queued.Add(-n)
		return resQueueFull
	}
	select {
	case w.queue <- frame:
		return resForwarded
	default:
		w.queued.Add(-n)
		return resQueueFull
	}
}

// writeLoop sends queued frames until ctx ends or a write fails.
func (w *wsConn) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.queue:
			w.queued.Add(-int64(len(f)))
			wctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
			err := w.conn.Write(wctx, websocket.MessageBinary, f)
			cancel()
			if err != nil {
				w.cancel()
				return
			}
		}
	}
}

// ServeHTTP relays over a WebSocket (mounted at wire.PathRelay): each
// binary message is one relay frame, with the same handshake as over UDP.
// The binding lasts as long as the socket; a socket that hasn't bound
// within wsAuthTimeout, stops answering pings, or loses its binding (the
// node bound elsewhere) is closed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.wsConns.Add(1) > maxWSConns {
		s.wsConns.Add(-1)
		http.Error(w, fmt.Sprintf("relay: %d WebSockets already open; retry later", maxWSConns), http.StatusServiceUnavailable)
		return
	}
	defer s.wsConns.Add(-1)
	// Payloads are WireGuard ciphertext: compression would gain nothing.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		// Accept has written the HTTP error.
		s.log.Debug("relay websocket not accepted", "remote", r.RemoteAddr, "err", err)
		return
	}
	c.SetReadLimit(maxFrame)

	// Derived from the request so that a server shutting down through its
	// BaseContext also ends its relay sockets.
	ctx, cancel := context.WithCancel(r.Context())
	ws := &wsConn{conn: c, queue: make(chan []byte, wsQueueFrames), cancel: cancel}
	var wg sync.WaitGroup
	wg.Go(func() { ws.writeLoop(ctx) })
	wg.Go(func() { ws.keepalive(ctx) })
	defer func() {
		s.unbindEndpoint(endpoint{ws: ws})
		cancel()
		wg.Wait()
		c.CloseNow() //nolint:errcheck // the peer may already be gone
	}()

	promoted := false
	k := newSink(nil, 0) // no socket of its own: UDP frames go at once
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			s.log.Debug("relay websocket closed", "remote", r.RemoteAddr, "err", err)
			return
		}
		if typ != websocket.MessageBinary {
			s.metrics.count(resGarbage)
			continue
		}
		k.begin(s)
		s.handle(msg, origin{ws: ws}, &k)
		k.flush(s.metrics)
		if !promoted && ws.bound.Load() {
			// The node proved its key: its connection no longer counts
			// against the server's unauthenticated ones.
			admit.Promote(r.Context())
			promoted = true
		}
	}
}

// keepalive closes the socket unless it is bound by wsAuthTimeout and
// then, at each wsPingInterval, still bound and answering pings. Pings are
// answered by the peer's reader, which a relay client always runs.
func (w *wsConn) keepalive(ctx context.Context) {
	t := time.NewTimer(wsAuthTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !w.bound.Load() {
			w.cancel()
			return
		}
		pctx, cancel := context.WithTimeout(ctx, wsPingTimeout)
		err := w.conn.Ping(pctx)
		cancel()
		if err != nil {
			w.cancel()
			return
		}
		t.Reset(wsPingInterval)
	}
}
