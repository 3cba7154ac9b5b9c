package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/admit"
	"github.com/meshnode/meshnode/internal/wire"
)

// Stream authentication and message bounds.
const (
	// challengeLen is 256 bits: a proof can't be replayed across streams.
	challengeLen = 32
	// authTimeout is how long a node has to answer the challenge; the
	// connection's own pre-authentication deadline (preAuthLimits) counts
	// from its accept.
	authTimeout = 5 * time.Second
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

// streamLimits bound what one node's stream may cost the coordinator and
// its peers. Excess is coalesced or dropped, never fatal: the stream
// stays up.
type streamLimits struct {
	// Endpoint reports: each one stored costs a synced database write and
	// a push to every peer. A node reports a few in its first second (LAN
	// addresses, then its STUN mapping, then a port mapping), later only
	// on change (re-STUN every 20-25 s, link changes). Beyond the budget a
	// report waits, replaced by any newer one: the latest is always
	// applied, within 1/endpointRate.
	endpointRate  rate.Limit
	endpointBurst int
	// Rendezvous requests: a node asks at most every 2 s per peer (its
	// RendezvousGap), so a burst covers a node re-punching many peers at
	// once (a network change); beyond it requests are dropped and the
	// node asks again at its next retry.
	rendezvousRate  rate.Limit
	rendezvousBurst int
	// cueGap is the least time between two punch cues naming the same
	// peer. A punch round lasts 6 s, so cues closer together help nothing;
	// one asked for sooner waits for the gap's end, and a later one
	// replaces it. A flood of requests naming a victim reaches it as at
	// most one cue per gap per flooding peer.
	cueGap time.Duration
	// silence drops a stream that sent no message or ping for this long
	// (wire.StreamSilence): the node only pings every wire.StreamPing.
	silence time.Duration
	// Relay reports: as many as a node's relay client may send
	// (wire.RelayReportEvery, wire.RelayReportBurst); more are dropped.
	reportRate  rate.Limit
	reportBurst int
	// Path reports: as many as a node sends (wire.PathReportGap,
	// wire.PathReportBurst); more are dropped.
	pathRate  rate.Limit
	pathBurst int
}

func defaultStreamLimits() streamLimits {
	return streamLimits{
		endpointRate:    1,
		endpointBurst:   8,
		rendezvousRate:  10,
		rendezvousBurst: 100,
		cueGap:          time.Second,
		silence:         wire.StreamSilence,
		reportRate:      rate.Every(wire.RelayReportEvery),
		reportBurst:     wire.RelayReportBurst,
		pathRate:        rate.Every(wire.PathReportGap),
		pathBurst:       wire.PathReportBurst,
	}
}

// streamTypes are the message types counted by name; anything else is
// counted as "unknown" so a node can't grow the metric's label set.
var streamTypes = []string{
	wire.MsgChallenge, wire.MsgAuth, wire.MsgWelcome, wire.MsgPeers,
	wire.MsgEndpoints, wire.MsgRendezvous, wire.MsgPunch, wire.MsgError,
	wire.MsgRelayReport, wire.MsgPaths,
}

func (s *Server) countMessage(typ string) {
	if !slices.Contains(streamTypes, typ) {
		typ = "unknown"
	}
	s.met.messages.WithLabelValues(typ).Inc()
}

// handleStream upgrades the request and authenticates the node, then
// serves its session in a goroutine of its own and returns, which calls
// done when the session ends. Returning frees what net/http keeps for the
// connection while its handler runs (its buffers, the request, and the
// goroutine's stack, grown by the TLS handshake); at 10,000 streams that
// was about a third of the coordinator's memory (bench/RESULTS.md). The
// session ends with ctx, the server's.
func (s *Server) handleStream(ctx context.Context, w http.ResponseWriter, r *http.Request, done func()) {
	handedOff := false
	defer func() {
		if !handedOff {
			done()
		}
	}()
	h := new(heard)
	h.now()
	c, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{OnPingReceived: func(context.Context, []byte) bool {
		h.now()
		return true
	}})
	if err != nil {
		s.strangerLog.Debug("stream: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c.SetReadLimit(maxStreamMessage)
	wr := &writer{count: s.countMessage}
	key, holds, err := s.authenticate(r.Context(), c, wr)
	if err != nil {
		c.CloseNow() //nolint:errcheck // closing anyway
		s.strangerLog.Info("stream refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	admit.Promote(r.Context())
	tcp, _ := netip.ParseAddrPort(r.RemoteAddr)
	src, stun := netip.AddrPortFrom(tcp.Addr().Unmap(), tcp.Port()), s.stunServers(r.Host)
	handedOff = true
	go s.runSession(ctx, &stream{c: c, wr: wr, h: h, key: key, holds: holds, tcp: src, stun: stun}, done)
}

// stream is what an authenticated stream's session starts from, kept on
// the heap rather than in the first frames of the session's goroutine,
// which stay on its stack for the stream's life (see readLoop).
type stream struct {
	c     *websocket.Conn
	wr    *writer
	h     *heard
	key   crypto.PublicKey
	holds *wire.MapVersion // the map the node says it holds; nil: none
	tcp   netip.AddrPort   // the node's source address
	stun  stunOffer
}

// authenticate runs the challenge/auth exchange: the node proves it holds
// the private key of a registered node. Failures are told to the node
// (unauthorized or node_removed) before the stream closes. holds is the
// map the node says it holds, for its welcome (nil: none).
func (s *Server) authenticate(ctx context.Context, c *websocket.Conn, wr *writer) (key crypto.PublicKey, holds *wire.MapVersion, err error) {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	challenge := make([]byte, challengeLen)
	rand.Read(challenge)
	if err := wr.write(ctx, c, wire.StreamMsg{Type: wire.MsgChallenge, Challenge: challenge}); err != nil {
		return crypto.PublicKey{}, nil, fmt.Errorf("send challenge: %w", err)
	}
	m, err := s.read(ctx, c)
	var bad errMalformed
	if errors.As(err, &bad) {
		return crypto.PublicKey{}, nil, reject(ctx, c, wr, wire.ErrCodeBadRequest, bad.Error())
	}
	if err != nil {
		return crypto.PublicKey{}, nil, fmt.Errorf("read auth: %w", err)
	}
	if m.Type != wire.MsgAuth || m.PublicKey == nil || len(m.Proof) == 0 {
		return crypto.PublicKey{}, nil, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
			fmt.Sprintf("expected an %s message with public_key and proof, got %q", wire.MsgAuth, m.Type))
	}
	key = *m.PublicKey
	if !crypto.VerifyProof(s.key, key, wire.ProofLabel, challenge, m.Proof) {
		return key, nil, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
			fmt.Sprintf("proof does not match public key %s", key.Short()))
	}
	if !s.hub.has(key) {
		n, err := s.store.Node(ctx, key)
		switch {
		case errors.Is(err, store.ErrRemoved):
			return key, nil, reject(ctx, c, wr, wire.ErrCodeNodeRemoved, removedText(key))
		case err == nil:
			// Registered through another coordinator, whose notice
			// has not been applied yet.
			s.adopt(n)
		default:
			return key, nil, reject(ctx, c, wr, wire.ErrCodeUnauthorized,
				fmt.Sprintf("node %s is not registered; register with a join token first", key.Short()))
		}
	}
	return key, m.Holds, nil
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

// read reads one JSON text message. The message lives on the heap (its
// decoding needs it there anyway), not in read's frame: see readLoop.
func (s *Server) read(ctx context.Context, c *websocket.Conn) (*wire.StreamMsg, error) {
	typ, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errMalformed{errors.New("binary message; the stream carries JSON text messages")}
	}
	m, err := decodeMessage(b)
	if err != nil {
		return nil, err
	}
	s.countMessage(m.Type)
	return m, nil
}

// decodeMessage parses one message from a node. Decoding errors can quote
// the message (netip's do, whole), and the error goes back to the node and,
// before authentication, into the log: it is cut to maxErrorQuote.
func decodeMessage(b []byte) (*wire.StreamMsg, error) {
	m := new(wire.StreamMsg)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, errMalformed{errors.New("malformed message: " + truncate(err.Error(), maxErrorQuote))}
	}
	return m, nil
}

// errMalformed marks a message the node got wrong (as opposed to a broken
// connection).
type errMalformed struct{ error }

// runSession serves an authenticated node until its stream ends. Its
// goroutine reads from the start: it answers the node's pings while the
// welcome waits for its turn or is being written (a long one, to a slow
// link), so the node never times out a stream that is only slow to
// welcome it. What the node sends before its welcome waits in the
// session (an endpoints report) or is refused for want of a session in
// the hub (a rendezvous request). Another goroutine welcomes; after the
// welcome the reader is the stream's only goroutine, and writes and
// report applications run on demand (sessionwrite.go). holds is the map
// the node says it holds (nil: none).
func (s *Server) runSession(ctx context.Context, st *stream, done func()) {
	ctx, sess, end := s.startSession(ctx, st, done)
	defer end()
	s.readLoop(ctx, st.c, sess, st.h)
}

// startSession makes the stream's session and starts its welcome. end,
// called once the read loop has returned, waits for the welcome, detaches
// the session and closes the stream. What it holds is on the heap, not in
// runSession's frame.
func (s *Server) startSession(ctx context.Context, st *stream, done func()) (context.Context, *session, func()) {
	ctx, cancel := context.WithCancel(ctx)
	sess := newSession(st.key, st.tcp, st.c, cancel, s.limits)
	var (
		wg      sync.WaitGroup
		offline func()
	)
	wg.Go(func() {
		var welcomed bool
		if offline, welcomed = s.welcome(ctx, st.c, st.wr, st.h, sess, st.holds, st.stun); !welcomed {
			cancel()
		}
	})
	return ctx, sess, func() {
		cancel()
		wg.Wait()
		sess.close()
		if offline != nil {
			offline()
		}
		st.c.CloseNow() //nolint:errcheck // closing anyway
		done()
	}
}

// welcome attaches the session to the hub, sends the welcome in its turn
// (only what changed since holds, when the hub still can) and starts the
// session's writes and report applications. It returns whether the
// welcome went out, and, once the session was attached, the function that
// detaches it, to call when the stream has ended.
func (s *Server) welcome(ctx context.Context, c *websocket.Conn, wr *writer, h *heard, sess *session, holds *wire.MapVersion, stun stunOffer) (offline func(), welcomed bool) {
	key := sess.key
	if !s.admitWelcome(ctx) {
		return nil, false
	}
	release := sync.OnceFunc(s.welcomed)
	defer release()
	now := time.Now()
	welcome, old, ok := s.hub.attach(sess, now, stun, holds)
	if !ok {
		reject(ctx, c, wr, wire.ErrCodeNodeRemoved, removedText(key)) //nolint:errcheck // logged below
		s.log.Info("stream refused: node removed while connecting", "node", key.Short())
		return nil, false
	}
	if old != nil {
		old.stop(closeReplaced, "replaced by a newer stream from the same node", nil)
	}
	welcome.msg.DNS = &s.dns
	welcome.msg.Coordinators = s.meshList()
	log := s.log.With("node", welcome.msg.Self.Name, "key", key.Short())
	log.Info("node online", "resumed", welcome.msg.Resumed)
	offline = func() {
		t := time.Now()
		s.paths.forget(key, sess)
		if s.hub.detach(sess, t) {
			s.markPresence(key)
			s.recordSeen(key, t)
			log.Info("node offline")
		}
	}
	err := wr.writeOut(ctx, c, welcome)
	release()
	if err != nil {
		log.Debug("stream: send welcome", "err", err)
		return offline, false
	}
	kind := "full"
	if welcome.msg.Resumed {
		kind = "resumed"
	}
	s.met.welcomes.WithLabelValues(kind).Inc()
	sess.ready(ctx, wr)
	sess.watchSilence(ctx, log, h)
	// Stored after the welcome is out and beside the writes: when many
	// nodes reconnect at once (a coordinator restart), neither their
	// welcomes nor their deltas queue behind these synced writes.
	s.markPresence(key)
	s.recordSeen(key, now)
	sess.applyWith(func() { s.applyReports(ctx, sess) })
	return offline, true
}

// welcomeSlots bounds the welcomes being built and written at once. A
// welcome is the node's whole peer map; when thousands of nodes connect
// together (a coordinator restart, a fleet powering on) the rest wait
// their turn, their streams up and their pings answered, instead of
// holding thousands of full maps in memory and each slowing all the
// others' writes. A slot is held at most writeTimeout by a slow node.
const welcomeSlots = 64

// admitWelcome waits for a welcome slot; false if ctx ended first.
func (s *Server) admitWelcome(ctx context.Context) bool {
	select {
	case s.welcomeSlots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// welcomed frees the slot admitWelcome took.
func (s *Server) welcomed() { <-s.welcomeSlots }

// readLoop handles the node's messages until the stream ends. A stream
// spends nearly all its life blocked in read, and the stack under that
// read is what the runtime can't take back: at a GC it halves a
// goroutine's stack only while less than a quarter of it (less the
// runtime's 800-byte reserve) is in use. With the message in read's and
// readLoop's frames the blocked depth was 6 KB, which kept 16 KiB a
// stream; handle's frame, holding what a message's handling needs, is on
// the stack only while a message is handled (bench/RESULTS.md, issue 14).
func (s *Server) readLoop(ctx context.Context, c *websocket.Conn, sess *session, h *heard) {
	for {
		m, err := s.read(ctx, c)
		h.now()
		if !s.handle(ctx, sess, m, err) {
			return
		}
	}
}

// handle acts on one message from the node, or on read's error, and says
// whether the stream goes on.
func (s *Server) handle(ctx context.Context, sess *session, m *wire.StreamMsg, err error) bool {
	var bad errMalformed
	switch {
	case errors.As(err, &bad):
		sess.stop(websocket.StatusPolicyViolation, "malformed message",
			&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: bad.Error()})
		return true
	case err != nil:
		return false
	}
	switch m.Type {
	case wire.MsgEndpoints:
		if err := validEndpoints(m.Endpoints, m.NAT); err != nil {
			sess.stop(websocket.StatusPolicyViolation, "bad endpoints",
				&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: err.Error()})
			return true
		}
		if m.Software != nil {
			if err := m.Software.Check(); err != nil {
				sess.stop(websocket.StatusPolicyViolation, "bad software",
					&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: err.Error()})
				return true
			}
			if sess.setSoftware(*m.Software) {
				s.paths.softwareChanged(sess.key)
			}
			s.recordSoftware(ctx, sess.key, *m.Software)
		}
		s.acceptReport(sess, *m)
	case wire.MsgRendezvous:
		if m.Peer == nil {
			sess.stop(websocket.StatusPolicyViolation, "bad rendezvous",
				&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: "rendezvous needs peer"})
			return true
		}
		s.rendezvous(sess.key, *m.Peer)
	case wire.MsgRelayReport:
		if m.RelayKey == nil {
			sess.stop(websocket.StatusPolicyViolation, "bad relay report",
				&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: "relay_report needs relay_key"})
			return true
		}
		s.relayReport(sess, *m.RelayKey, m.Peer)
	case wire.MsgPaths:
		s.pathReport(sess, *m)
	case wire.MsgError:
		s.nodeLog.Info("node reported an error", "node", sess.key.Short(), "code", truncate(m.Code, maxAttrLen), "error", truncate(m.Error, maxCloseReason))
		return false
	default:
		// A newer node may speak types this coordinator doesn't know.
		s.nodeLog.Debug("stream: ignoring message", "node", sess.key.Short(), "type", truncate(m.Type, maxAttrLen))
	}
	return true
}

// rendezvous cues both nodes to punch, within the requester's budget.
func (s *Server) rendezvous(from, to crypto.PublicKey) {
	res, coalesced, via := s.hub.rendezvous(from, to)
	s.met.limited.WithLabelValues(limitedCues).Add(float64(coalesced))
	switch res {
	case rendezvousCued:
		s.met.rendezvous.Inc()
		s.nodeLog.Debug("rendezvous", "from", from.Short(), "to", to.Short(), "via", via)
		if via != "" {
			s.cueElsewhere(via, to, from)
		}
	case rendezvousSkipped:
		s.nodeLog.Debug("rendezvous skipped: peer offline or not a peer", "from", from.Short(), "to", to.Short())
	case rendezvousOverBudget:
		s.met.limited.WithLabelValues(limitedRendezvous).Inc()
		s.nodeLog.Info("rendezvous request over the node's budget; dropped", "from", from.Short(), "to", to.Short())
	}
}

// cueElsewhere asks coordinator, which holds to's stream, to cue it to
// punch towards about. It runs on about's read loop, bounded by its
// rendezvous budget; one database round trip, at most writeTimeout.
func (s *Server) cueElsewhere(coordinator string, to, about crypto.PublicKey) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := s.store.Cue(ctx, coordinator, to, about); err != nil {
		s.nodeLog.Warn("rendezvous: ask the peer's coordinator to cue it", "from", about.Short(), "to", to.Short(), "err", err)
	}
}

// acceptReport queues a node's endpoints report to be applied, with the
// public candidates the coordinator has no evidence for held back (see
// evidence). A held report is looked at again when the node's STUN request
// shows a new source.
func (s *Server) acceptReport(sess *session, m wire.StreamMsg) {
	kept, held := s.evidence.filter(sess.key, m.Endpoints, sess.tcp.Addr())
	if len(held) > 0 {
		sess.hold(m)
		s.met.unobserved.Add(float64(len(held)))
		s.nodeLog.Info("candidates held back: the coordinator has not seen the node at these public addresses", "node", sess.key.Short(), "endpoints", held)
	} else {
		sess.hold(wire.StreamMsg{})
	}
	m.Endpoints = kept
	replaced, start := sess.setReport(m)
	if replaced {
		s.met.limited.WithLabelValues(limitedEndpoints).Inc()
	}
	if start != nil {
		go start()
	}
}

// freshEvidence applies a node's held report again: its STUN request just
// came from a new source (evidence.fresh). It runs on the STUN server's
// packet path, so it only queues.
func (s *Server) freshEvidence(key crypto.PublicKey) {
	sess := s.hub.session(key)
	if sess == nil {
		return
	}
	if m, ok := sess.held(); ok {
		s.acceptReport(sess, m)
	}
}

// applyReports applies the node's endpoint reports within its budget, the
// latest first: one that arrives while the budget is spent replaces the
// one waiting. It runs while reports come (session.applyWith).
func (s *Server) applyReports(ctx context.Context, sess *session) {
	defer sess.run.work.Done()
	for sess.nextReport() {
		if sess.endpoints.Wait(ctx) != nil {
			return
		}
		if m, ok := sess.pendingReport(); ok {
			s.setEndpoints(ctx, sess.key, m.Endpoints, m.NAT)
			s.setRelay(sess.key, m.Relay)
			s.setAdvertised(ctx, sess.key, m.Routes)
			sess.reportDone(m)
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
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			s.nodeLog.Warn("store endpoints", "node", key.Short(), "err", err)
		}
		return
	}
	s.met.endpointWrites.Inc()
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
	if !nat.Filtering.Known() {
		return fmt.Errorf("nat filtering %q is not a known RFC 4787 filtering behaviour", truncate(string(nat.Filtering), maxAttrLen))
	}
	return nil
}

// seenWriteGap bounds how often a node's presence is stored: a node that
// reconnects in a loop would otherwise cost two synced writes a round. The
// in-memory view (what peers see) is always current; only the persisted
// last-seen time, shown after a coordinator restart, may lag by this much.
const seenWriteGap = 10 * time.Second

// recordSeen stores presence, at most once per seenWriteGap per node; the
// in-memory view already has it, so a failure costs only the persisted
// last-seen time.
func (s *Server) recordSeen(key crypto.PublicKey, t time.Time) {
	s.seenMu.Lock()
	if last, ok := s.seenWritten[key]; ok && t.Sub(last) < seenWriteGap {
		s.seenMu.Unlock()
		return
	}
	s.seenWritten[key] = t
	s.seenMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := s.store.SetLastSeen(ctx, key, t); err != nil {
		s.nodeLog.Warn("store last seen", "node", key.Short(), "err", err)
		return
	}
	s.met.presenceWrites.Inc()
}

// setRelay records the relay a node announces. A bad address withdraws
// the node's relay rather than ending its stream: the node's candidates
// in the same message are still good.
func (s *Server) setRelay(key crypto.PublicKey, announced string) {
	relay, err := parseRelay(announced)
	if err != nil {
		s.nodeLog.Warn("relay address refused", "node", key.Short(), "err", err)
	}
	designated, changed := s.hub.setRelay(key, relay)
	if changed {
		s.markPresence(key)
	}
	if !designated && relay.IsValid() {
		s.nodeLog.Info("relay not offered to peers: the node is not designated a relay (tag it with 'meshnode nodes tag NAME "+RelayTag+"')",
			"node", key.Short(), "relay", relay)
	}
}

// ipv4Broadcast is the limited broadcast address (RFC 919).
var ipv4Broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// parseRelay checks a relay node's announced address. It must be a literal
// IP:port that peers can send to: a host name would have every node resolve
// it, and its answer could point anywhere.
func parseRelay(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay %q is not an IP:port (host names are refused; announce the IP address peers reach)", truncate(s, maxAttrLen))
	}
	// The errors quote what the node sent, shortened: a zone may be long.
	a, quoted := ap.Addr().Unmap(), truncate(s, maxAttrLen)
	switch {
	case ap.Port() == 0:
		err = fmt.Errorf("relay %q: port 0 can't be reached", quoted)
	case a.IsUnspecified(), a.IsMulticast(), a == ipv4Broadcast:
		err = fmt.Errorf("relay %q: an unspecified, multicast or broadcast address is no relay", quoted)
	case a.Zone() != "":
		err = fmt.Errorf("relay %q: an address with a zone means nothing to peers", quoted)
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}
