package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

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
	// silenceCheck is how often a stream's silence is checked against
	// wire.StreamSilence: nodes ping (wire.StreamPing), the coordinator
	// only listens, so a crashed node or a vanished NAT mapping is noticed
	// without the coordinator sending anything to idle nodes.
	silenceCheck = 10 * time.Second
)

// WebSocket close codes (RFC 6455 §7.4.2 leaves 4000-4999 to applications).
// 4002, which closed a node that didn't keep up with its queue, is
// retired: what waits for a node is bounded by its peers (one delta entry
// and one cue per peer), so traffic that others cause never cuts it off.
const (
	closeReplaced websocket.StatusCode = 4000 // a newer stream from the same key took over
	closeRemoved  websocket.StatusCode = 4001 // the node was removed from the mesh
)

// session is one node's stream. The hub queues deltas and cues into it
// under the hub's lock; a flush, started on demand (sessionwrite.go),
// sends them. Everything that
// waits is kept per peer, the latest replacing the older, so a slow node
// (or one that others flood with changes and cues) holds at most one
// entry per peer and catches up with the newest state.
type session struct {
	key crypto.PublicKey
	// tcp is the stream's source as seen here: the node's public TCP
	// mapping, offered to peers as a TCP hole-punching candidate.
	tcp netip.AddrPort
	// relay is the UDP relay the node announces, offered to peers only
	// while the node holds RelayTag; guarded by the hub's lock.
	relay netip.AddrPort
	// attached is when the hub made it the node's stream; guarded by the
	// hub's lock.
	attached time.Time
	conn     *websocket.Conn
	cancel   context.CancelFunc
	limits   streamLimits
	// rendezvous is the node's budget of rendezvous requests, reports
	// its budget of relay reports.
	rendezvous *rate.Limiter
	reports    *rate.Limiter
	paths      *rate.Limiter // its budget of path reports
	// endpoints is its budget of endpoint reports applied.
	endpoints *rate.Limiter

	mu sync.Mutex
	// self is the node's own record, when its relay designation changed
	// (the latest wins).
	self *wire.Node
	// filter is the node's new access filter (the latest wins).
	filter *wire.Filter
	// relayPairs are a relay node's new relay pairs (the latest wins).
	relayPairs *wire.RelayPairs
	// coordinators are the mesh's coordinators, when they changed (the
	// latest wins).
	coordinators []crypto.Coordinator
	// ups are the peers' new records, encoded (hub.encoded): shared by
	// every session they go to.
	ups     map[crypto.PublicKey]json.RawMessage
	rems    map[crypto.PublicKey]struct{}
	version uint64
	// cues wait per peer, a newer replacing an older; lastCue is when the
	// last cue naming each peer went out.
	cues    map[crypto.PublicKey]wire.StreamMsg
	lastCue map[crypto.PublicKey]time.Time
	report  *wire.StreamMsg // the latest endpoints report not yet stored
	// unproven is the latest report as the node sent it, while some of its
	// public candidates wait for evidence (see evidence); nil when none.
	unproven *wire.StreamMsg
	// software is what the node last reported running (version, OS), for
	// the administrator's view; it lives as long as the stream.
	software wire.Software
	final    *closing
	// meshRelay is the mesh's new relay (meshrelay.go; the latest wins).
	meshRelay *wire.MeshRelay
	// run is the state of the goroutines started on demand to write and
	// to apply reports (sessionwrite.go).
	run onDemand
}

// closing is how a session ends on the coordinator's initiative.
type closing struct {
	msg    *wire.StreamMsg // sent before the close frame, if set
	code   websocket.StatusCode
	reason string
}

func newSession(key crypto.PublicKey, tcp netip.AddrPort, conn *websocket.Conn, cancel context.CancelFunc, limits streamLimits) *session {
	return &session{
		tcp:        tcp,
		key:        key,
		conn:       conn,
		cancel:     cancel,
		limits:     limits,
		rendezvous: rate.NewLimiter(limits.rendezvousRate, limits.rendezvousBurst),
		reports:    rate.NewLimiter(limits.reportRate, limits.reportBurst),
		paths:      rate.NewLimiter(limits.pathRate, limits.pathBurst),
		endpoints:  rate.NewLimiter(limits.endpointRate, limits.endpointBurst),
	}
}

// upsert queues a peer's new record, encoded; the latest state of a
// peer wins.
func (s *session) upsert(key crypto.PublicKey, n json.RawMessage, version uint64) {
	s.mu.Lock()
	delete(s.rems, key)
	s.ups = orMake(s.ups)
	s.ups[key] = n
	s.version = version
	s.mu.Unlock()
	s.signal()
}

// setSelf queues the node's own record; the latest wins.
func (s *session) setSelf(n wire.Node, version uint64) {
	s.queue(version, func() { s.self = &n })
}

// setFilter queues the node's new filter; the latest wins.
func (s *session) setFilter(f *wire.Filter, version uint64) {
	s.queue(version, func() { s.filter = f })
}

// setRelayPairs queues a relay node's new relay pairs; the latest wins.
func (s *session) setRelayPairs(p *wire.RelayPairs, version uint64) {
	s.queue(version, func() { s.relayPairs = p })
}

// setCoordinators queues the mesh's new list of coordinators; the latest
// wins. It leaves the map's version alone: the map did not change.
func (s *session) setCoordinators(list []crypto.Coordinator) {
	s.mu.Lock()
	s.coordinators = list
	s.mu.Unlock()
	s.signal()
}

// setMeshRelay queues the mesh's new relay; the latest wins.
func (s *session) setMeshRelay(r *wire.MeshRelay, version uint64) {
	s.queue(version, func() { s.meshRelay = r })
}

// queue runs set, which replaces a queued value, under mu at version, and
// schedules a flush.
func (s *session) queue(version uint64, set func()) {
	s.mu.Lock()
	set()
	s.version = version
	s.mu.Unlock()
	s.signal()
}

// removePeer queues a peer's removal, cancelling a queued upsert of it
// and a cue naming it: a node is told nothing more of a peer it may no
// longer see.
func (s *session) removePeer(key crypto.PublicKey, version uint64) {
	s.mu.Lock()
	delete(s.ups, key)
	delete(s.cues, key)
	s.rems = orMake(s.rems)
	s.rems[key] = struct{}{}
	s.version = version
	s.mu.Unlock()
	s.signal()
}

// cue queues a punch cue naming peer, replacing one still waiting; it
// reports whether it did. A cue goes out at once unless one naming the
// same peer went out less than cueGap ago; then it waits for the gap's end.
func (s *session) cue(peer crypto.PublicKey, m wire.StreamMsg) (replaced bool) {
	s.mu.Lock()
	_, replaced = s.cues[peer]
	s.cues = orMake(s.cues)
	s.cues[peer] = m
	s.mu.Unlock()
	s.signal()
	return replaced
}

// refreshCue replaces a waiting cue naming peer with m, which carries the
// peer's current candidates. A node takes a cue's candidates as the peer's
// whole list, so a cue must never carry older ones than a delta sent
// before it.
func (s *session) refreshCue(peer crypto.PublicKey, m wire.StreamMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cues[peer]; ok {
		s.cues[peer] = m
	}
}

// setReport keeps m as the latest endpoints report, replacing one not yet
// stored; it reports whether it did, and returns the report applier for
// the caller to start when none runs (see onDemand).
func (s *session) setReport(m wire.StreamMsg) (replaced bool, start func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	replaced = s.report != nil
	s.report = &m
	s.run.reportWaits = true
	return replaced, s.startApplierLocked()
}

// setSoftware keeps what the node reports running, and reports whether
// it changed; sw passed Check.
func (s *session) setSoftware(sw wire.Software) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = s.software != sw
	s.software = sw
	return changed
}

// reportedSoftware is what the node last reported running (zero: nothing).
func (s *session) reportedSoftware() wire.Software {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.software
}

// hold keeps m, the node's report as sent, until evidence for the
// candidates held back from it arrives; a report with no Type clears it.
func (s *session) hold(m wire.StreamMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Type == "" {
		s.unproven = nil
	} else {
		s.unproven = &m
	}
}

// held returns the report kept by hold.
func (s *session) held() (wire.StreamMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unproven == nil {
		return wire.StreamMsg{}, false
	}
	return *s.unproven, true
}

// pendingReport returns the latest endpoints report not yet stored. It
// stays pending while it is being stored, so that a cue built meanwhile
// carries it (see hub.cueNaming).
func (s *session) pendingReport() (*wire.StreamMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report, s.report != nil
}

// reportDone ends m's pending state once it is stored, unless a newer
// report replaced it meanwhile.
func (s *session) reportDone(m *wire.StreamMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.report == m {
		s.report = nil
	}
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

// take empties the session's queues: the delta, the cues that are due, and
// the closing. The other cues wait; next is when the first is due (0:
// none waits).
func (s *session) take(now time.Time) (delta *outgoing, cues []wire.StreamMsg, next time.Duration, final *closing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ups) > 0 || len(s.rems) > 0 || s.self != nil || s.filter != nil || s.relayPairs != nil || s.coordinators != nil || s.meshRelay != nil {
		delta = &outgoing{msg: wire.StreamMsg{Type: wire.MsgPeers, Version: s.version, Self: s.self, Filter: s.filter, RelayPairs: s.relayPairs, Coordinators: s.coordinators, MeshRelay: s.meshRelay}, field: fieldUpsert}
		s.self, s.filter, s.relayPairs, s.coordinators, s.meshRelay = nil, nil, nil, nil, nil
		delta.parts = slices.AppendSeq(make([]json.RawMessage, 0, len(s.ups)), maps.Values(s.ups))
		for k := range s.rems {
			delta.msg.Remove = append(delta.msg.Remove, k)
		}
		s.ups, s.rems = nil, nil
	}
	for p, m := range s.cues {
		if wait := s.limits.cueGap - now.Sub(s.lastCue[p]); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		cues = append(cues, m)
		s.lastCue = orMake(s.lastCue)
		s.lastCue[p] = now
		delete(s.cues, p)
	}
	// A cue older than the gap constrains nothing: forget it, so the map
	// holds only the peers cued of late.
	for p, t := range s.lastCue {
		if _, waiting := s.cues[p]; !waiting && now.Sub(t) >= s.limits.cueGap {
			delete(s.lastCue, p)
		}
	}
	s.cues, s.lastCue = nilIfEmpty(s.cues), nilIfEmpty(s.lastCue)
	return delta, cues, next, s.final
}

// orMake returns m, or a new map if m is nil. A session's queues are
// made when something is queued and dropped once sent (take): a map keeps
// the room of its largest size even when cleared, and a herd of nodes
// connecting at once would leave each session holding room for all its
// peers for the stream's life.
func orMake[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return make(map[K]V)
	}
	return m
}

// nilIfEmpty drops an empty map, for orMake to make again when needed.
func nilIfEmpty[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}

// heard records when the node was last heard: a message or a ping.
type heard struct{ at atomic.Int64 }

func (h *heard) now() { h.at.Store(time.Now().UnixNano()) }

func (h *heard) since() time.Duration { return time.Since(time.Unix(0, h.at.Load())) }

// watchSilence drops the stream when the node has been silent for
// limits.silence: it stopped pinging. A timer checks, re-armed after each
// check until ctx is done, rather than a goroutine a stream: at 10,000
// streams each goroutine's stack costs tens of MB.
func (s *session) watchSilence(ctx context.Context, log *slog.Logger, h *heard) {
	every := min(silenceCheck, s.limits.silence/4)
	var check func()
	check = func() {
		if ctx.Err() != nil {
			return
		}
		if quiet := h.since(); quiet > s.limits.silence {
			log.Info("stream dead: the node went silent", "node", s.key.Short(), "silent", quiet.Round(time.Second))
			s.cancel()
			return
		}
		time.AfterFunc(every, check)
	}
	time.AfterFunc(every, check)
}

// writer writes stream messages and counts them.
type writer struct {
	count func(typ string)
}

func (w *writer) write(ctx context.Context, c *websocket.Conn, m wire.StreamMsg) error {
	return w.writeOut(ctx, c, outgoing{msg: m})
}

// Fields of a stream message that outgoing splices in.
const (
	fieldPeers  = "peers"
	fieldUpsert = "upsert"
)

// outgoing is a message with a list of nodes already encoded (hub.encoded),
// which encode splices in as field: a full map or a delta costs a copy
// of each node's shared encoding instead of encoding each node again for
// every recipient.
type outgoing struct {
	msg   wire.StreamMsg // without the field's nodes
	field string
	parts []json.RawMessage
}

// encode is the message's JSON: msg's, with field's array added before
// the closing brace (msg always has a type, so the object is never empty).
func (o outgoing) encode() ([]byte, error) {
	b, err := json.Marshal(o.msg)
	if err != nil || len(o.parts) == 0 {
		return b, err
	}
	size := len(b) + len(o.field) + 6
	for _, p := range o.parts {
		size += len(p) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"`...)
	out = append(out, o.field...)
	out = append(out, `":[`...)
	for i, p := range o.parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	return append(out, "]}"...), nil
}

func (w *writer) writeOut(ctx context.Context, c *websocket.Conn, o outgoing) error {
	b, err := o.encode()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	w.count(o.msg.Type)
	return nil
}
