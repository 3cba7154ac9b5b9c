package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Stream authentication and message bounds.
const (
	// challengeLen is 256 bits: a proof can't be replayed across streams.
	challengeLen = 32
	// authTimeout is how long a node has to answer the challenge.
	authTimeout = 10 * time.Second
	// maxStreamMessage bounds what the coordinator reads from a node; the
	// node-to-coordinator messages are small (an endpoints list at most).
	maxStreamMessage = wire.MaxNodeMessage
	// maxEndpoints bounds one node's candidate list, as nodes know.
	maxEndpoints = wire.MaxEndpoints
	// maxAttrLen bounds free-form strings (endpoint kinds) and what an
	// error quotes of a bad value.
	maxAttrLen = 64
	// maxErrorQuote bounds the text of a decoding error, which may quote
	// what the node sent.
	maxErrorQuote = 256
	// maxCloseReason is the room for a close reason in a close frame
	// (RFC 6455 §5.5: 125-byte control payload minus the 2-byte code).
	maxCloseReason = 123
)

// streamTypes are the message types counted by name; anything else is
// counted as "unknown" so a node can't grow the metric's label set.
var streamTypes = []string{
	wire.MsgChallenge, wire.MsgAuth, wire.MsgWelcome, wire.MsgPeers,
	wire.MsgEndpoints, wire.MsgRendezvous, wire.MsgPunch, wire.MsgError,
}

func (s *Server) countMessage(typ string) {
	if !slices.Contains(streamTypes, typ) {
		typ = "unknown"
	}
	s.met.messages.WithLabelValues(typ).Inc()
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.log.Debug("stream: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	defer c.CloseNow() //nolint:errcheck // closing anyway
	c.SetReadLimit(maxStreamMessage)
	ctx := r.Context()
	wr := &writer{count: s.countMessage}
	key, err := s.authenticate(ctx, c, wr)
	if err != nil {
		s.log.Info("stream refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	tcp, _ := netip.ParseAddrPort(r.RemoteAddr)
	s.runSession(ctx, c, wr, key, netip.AddrPortFrom(tcp.Addr().Unmap(), tcp.Port()), s.stunServers(r.Host))
}

// authenticate runs the challenge/auth exchange: the node proves it holds
// the private key of a registered node. Failures are told to the node
// (unauthorized or node_removed) before the stream closes.
func (s *Server) authenticate(ctx context.Context, c *websocket.Conn, wr *writer) (crypto.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	challenge := make([]byte, challengeLen)
	rand.Read(challenge)
	if err := wr.write(ctx, c, wire.StreamMsg{Type: wire.MsgChallenge, Challenge: challenge}); err != nil {
		return crypto.PublicKey{}, fmt.Errorf("send challenge: %w", err)
	}
	m, err := s.read(ctx, c)
	var bad errMalformed
	if errors.As(err, &bad) {
		return crypto.PublicKey{}, reject(ctx, c, wr, wire.ErrCodeBadRequest, bad.Error())
	}
	if err != nil {
		return crypto.PublicKey{}, fmt.Errorf("read auth: %w", err)
	}
	if m.Type != wire.MsgAuth || m.PublicKey == nil || len(m.Proof) == 0 {
		return crypto.PublicKey{}, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
			fmt.Sprintf("expected an %s message with public_key and proof, got %q", wire.MsgAuth, m.Type))
	}
	key := *m.PublicKey
	if !crypto.VerifyProof(s.key, key, wire.ProofLabel, challenge, m.Proof) {
		return key, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
			fmt.Sprintf("proof does not match public key %s", key.Short()))
	}
	if !s.hub.has(key) {
		if _, err := s.store.Node(ctx, key); errors.Is(err, store.ErrRemoved) {
			return key, reject(ctx, c, wr, wire.ErrCodeNodeRemoved,
				fmt.Sprintf("node %s was removed from the mesh; join again with a new token", key.Short()))
		}
		return key, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
			fmt.Sprintf("node %s is not registered; register with a join token first", key.Short()))
	}
	return key, nil
}

// reject tells the node why, closes the stream and returns the reason.
func reject(ctx context.Context, c *websocket.Conn, wr *writer, code, text string) error {
	wr.write(ctx, c, wire.StreamMsg{Type: wire.MsgError, Code: code, Error: text}) //nolint:errcheck // closing anyway
	c.Close(websocket.StatusPolicyViolation, truncate(text, maxCloseReason))       //nolint:errcheck // closing anyway
	return fmt.Errorf("%s: %s", code, text)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// read reads one JSON text message.
func (s *Server) read(ctx context.Context, c *websocket.Conn) (wire.StreamMsg, error) {
	var m wire.StreamMsg
	typ, b, err := c.Read(ctx)
	if err != nil {
		return m, err
	}
	if typ != websocket.MessageText {
		return m, errMalformed{errors.New("binary message; the stream carries JSON text messages")}
	}
	if m, err = decodeMessage(b); err != nil {
		return m, err
	}
	s.countMessage(m.Type)
	return m, nil
}

// decodeMessage parses one message from a node. Decoding errors can quote
// the message (netip's do, whole), and the error goes back to the node and,
// before authentication, into the log: it is cut to maxErrorQuote.
func decodeMessage(b []byte) (wire.StreamMsg, error) {
	var m wire.StreamMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return m, errMalformed{errors.New("malformed message: " + truncate(err.Error(), maxErrorQuote))}
	}
	return m, nil
}

// errMalformed marks a message the node got wrong (as opposed to a broken
// connection).
type errMalformed struct{ error }

// runSession serves an authenticated node until its stream ends.
func (s *Server) runSession(ctx context.Context, c *websocket.Conn, wr *writer, key crypto.PublicKey, tcp netip.AddrPort, stun []string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess := newSession(key, tcp, c, cancel)
	now := time.Now()
	welcome, old, ok := s.hub.attach(sess, now, stun)
	if !ok {
		reject(ctx, c, wr, wire.ErrCodeNodeRemoved, fmt.Sprintf("node %s was removed from the mesh; join again with a new token", key.Short())) //nolint:errcheck // logged below
		s.log.Info("stream refused: node removed while connecting", "node", key.Short())
		return
	}
	if old != nil {
		old.stop(closeReplaced, "replaced by a newer stream from the same node", nil)
	}
	log := s.log.With("node", welcome.Self.Name, "key", key.Short())
	log.Info("node online")
	defer func() {
		t := time.Now()
		if s.hub.detach(sess, t) {
			s.recordSeen(key, t)
			log.Info("node offline")
		}
	}()
	if err := wr.write(ctx, c, welcome); err != nil {
		log.Debug("stream: send welcome", "err", err)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { sess.writeLoop(ctx, wr) })
	wg.Go(func() { sess.pingLoop(ctx, log) })
	// Stored after the welcome is out: when many nodes reconnect at once
	// (a coordinator restart), their welcomes don't queue behind these
	// synced writes.
	s.recordSeen(key, now)
	s.readLoop(ctx, c, sess)
	cancel()
	wg.Wait()
}

// readLoop handles the node's messages until the stream ends.
func (s *Server) readLoop(ctx context.Context, c *websocket.Conn, sess *session) {
	for {
		m, err := s.read(ctx, c)
		var bad errMalformed
		switch {
		case errors.As(err, &bad):
			sess.stop(websocket.StatusPolicyViolation, "malformed message",
				&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: bad.Error()})
			continue
		case err != nil:
			return
		}
		switch m.Type {
		case wire.MsgEndpoints:
			if err := validEndpoints(m.Endpoints, m.NAT); err != nil {
				sess.stop(websocket.StatusPolicyViolation, "bad endpoints",
					&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: err.Error()})
				continue
			}
			s.setEndpoints(ctx, sess.key, m.Endpoints, m.NAT)
			if m.Relay == "" || validRelay(m.Relay) {
				s.hub.setRelay(sess.key, m.Relay)
			}
		case wire.MsgRendezvous:
			if m.Peer == nil {
				sess.stop(websocket.StatusPolicyViolation, "bad rendezvous",
					&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: "rendezvous needs peer"})
				continue
			}
			if s.hub.rendezvous(sess.key, *m.Peer) {
				s.met.rendezvous.Inc()
				s.log.Debug("rendezvous", "from", sess.key.Short(), "to", m.Peer.Short())
			} else {
				s.log.Debug("rendezvous skipped: peer offline or not a peer", "from", sess.key.Short(), "to", m.Peer.Short())
			}
		case wire.MsgError:
			s.log.Info("node reported an error", "node", sess.key.Short(), "code", m.Code, "error", m.Error)
			return
		default:
			// A newer node may speak types this coordinator doesn't know.
			s.log.Debug("stream: ignoring message", "node", sess.key.Short(), "type", m.Type)
		}
	}
}

// setEndpoints stores a node's candidates, then pushes them. A repeat of
// the current list is neither written nor pushed.
func (s *Server) setEndpoints(ctx context.Context, key crypto.PublicKey, eps []wire.Endpoint, nat *wire.NATInfo) {
	cur, curNAT, ok := s.hub.endpoints(key)
	if !ok || (slices.Equal(cur, eps) && equalNAT(curNAT, nat)) {
		return
	}
	if err := s.store.SetEndpoints(ctx, key, eps, nat); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("store endpoints", "node", key.Short(), "err", err)
		}
		return
	}
	s.hub.setEndpoints(key, eps, nat)
}

func equalNAT(a, b *wire.NATInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func validEndpoints(eps []wire.Endpoint, nat *wire.NATInfo) error {
	if len(eps) > maxEndpoints {
		return fmt.Errorf("%d endpoints; at most %d", len(eps), maxEndpoints)
	}
	for _, e := range eps {
		if !e.Addr.IsValid() || e.Addr.Port() == 0 || e.Addr.Addr().IsUnspecified() {
			return fmt.Errorf("endpoint %q is not a usable address:port", e.Addr)
		}
		if e.Kind == "" || len(e.Kind) > maxAttrLen {
			return fmt.Errorf("endpoint %v: kind %q must be 1 to %d characters", e.Addr, truncate(e.Kind, maxAttrLen), maxAttrLen)
		}
	}
	if nat == nil {
		return nil
	}
	// Peers choose their traversal technique by these values (wire.NATInfo's
	// methods), so only the ones they know may pass on to them.
	if !nat.Mapping.Known() {
		return fmt.Errorf("nat mapping %q is not a known RFC 4787 mapping behaviour", truncate(string(nat.Mapping), maxAttrLen))
	}
	if !nat.PortAlloc.Known() {
		return fmt.Errorf("nat port allocation %q is not a known allocation pattern", truncate(string(nat.PortAlloc), maxAttrLen))
	}
	return nil
}

// recordSeen stores presence; the in-memory view already has it, so a
// failure costs only the persisted last-seen time.
func (s *Server) recordSeen(key crypto.PublicKey, t time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := s.store.SetLastSeen(ctx, key, t); err != nil {
		s.log.Warn("store last seen", "node", key.Short(), "err", err)
	}
}

// validRelay checks a relay node's advertised address: host:port.
func validRelay(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != "" && port != "0"
}
