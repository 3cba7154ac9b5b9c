package bind

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
)

// Handshakes that meet no path, and sessions only one side still has.
//
// wireguard-go sends a handshake initiation the moment a packet waits for
// a session. When the Bind can't carry it (the peer is not online yet,
// this node's relay is not bound yet) or the path loses it (the peer's
// relay binding is a round trip behind, or the peer doesn't know this
// node's address yet and drops what comes from it), wireguard-go tries
// again only after REKEY_TIMEOUT, 5 s (device.RekeyTimeout; WireGuard
// paper §6.4): SendHandshakeInitiation sends nothing within RekeyTimeout
// of its last initiation, and the only way to ask for one sooner is to
// expire the session keys (Peer.ExpireCurrentKeypairs, which upstream uses
// when the private key changes). That makes a new initiation, with a new
// ephemeral key and sender index, and two initiations within the
// responder's flood window (device.HandshakeInitationRate, 20 ms) or its
// timestamp's granularity (tai64n whitens the low 24 bits of the
// nanoseconds, ~16 ms) lose the second: the responder drops it, and its
// answer to the first then matches no index the initiator still holds.
// So the Bind keeps the peer's last handshake message as it was sent and
// sends that same one again when the path manager says a path may just
// have come up, or the peer just showed it is up (ResendHandshake):
//
//   - an initiation, until the response comes. The responder
//     (ConsumeMessageInitiation) takes an initiation only when its TAI64N
//     timestamp is later than the last it took from that initiator (paper
//     §5.1): the first copy to arrive is answered, and later copies are
//     replays it drops before changing any state.
//   - a response, until the initiator's first transport packet comes
//     (which is how a responder learns the session is confirmed, paper
//     §5.4.7). A lost response would otherwise stall the pair as a lost
//     initiation does: the initiator's copies are replays to us. The
//     initiator takes a response only while it waits for one with that
//     index (ConsumeMessageResponse), so a second copy changes nothing.
//
// The initiator waits for the answer to exactly this exchange until its
// retransmit timer makes the next initiation (RekeyTimeout plus jitter),
// which replaces the copy on either side; past RekeyTimeout a copy is
// stale and is not sent.
//
// A session only one side has: a node that restarted (a reboot, an
// upgrade) has none, while its peer still sends with the old keys, which
// the restarted node drops (their receiver index is unknown to it). The
// peer starts a new handshake only when it has heard nothing back for
// KeepaliveTimeout + RekeyTimeout (15 s, expiredNewHandshake), and the
// restarted node only when it has traffic of its own. So a transport
// packet from a peer with which this Bind has seen no handshake answered,
// either way, asks the node to initiate one now (Handlers.NoSession),
// once a handshakeKickGap per peer.

// handshakeResendGap spaces the copies of one message, so that a burst of
// notes (a punch tick's pings from each of the peer's candidates arrive
// together) sends one copy, not one each. It is not a round trip: a note
// may be the first news that the peer can be reached at all (its relay
// binding came up a moment after the last copy went out and was lost),
// and holding the next copy back for a round trip would lose that moment.
// A note within the gap is not dropped: one copy goes when the gap ends
// (on a fast link the peer's relay binding can come up, and its note
// arrive, a few milliseconds after a copy the relay could not deliver).
// A copy that goes out while the answer to the last is on its way costs
// the peer the work of dropping it as a replay (maxHandshakeResends
// bounds it).
const handshakeResendGap = 20 * time.Millisecond

// maxHandshakeResends bounds the copies of one message: the path
// manager's notes are many while a peer punches (a ping every punch
// interval to each candidate), a copy of an initiation costs the
// responder a Diffie-Hellman, and a path that lost this many will most
// likely lose the next initiation too.
const maxHandshakeResends = 10

// handshakeKickGap spaces the handshakes asked for a peer that sends
// transport data with no session seen: one initiation answers it, and
// wireguard-go itself sends at most one a RekeyTimeout.
const handshakeKickGap = time.Second

// handshake is what the Bind knows of one peer's handshakes; its methods
// are safe for concurrent use.
type handshake struct {
	// session: a handshake response went either way since the Bind
	// began, so a session with the peer exists or is being made.
	session atomic.Bool
	// lastKick is when a handshake was last asked for (unix nanoseconds).
	lastKick atomic.Int64
	// responding: msg is a response, which the peer's first transport
	// packet answers (read on every received packet, without mu).
	responding atomic.Bool

	mu sync.Mutex
	// msg is the last initiation or response to the peer, until answered
	// or stale; made is when wireguard-go sent it, sent when a copy last
	// went out and resent how many copies did.
	msg    []byte
	made   time.Time
	sent   time.Time
	resent int
	// deferred: a note came within handshakeResendGap of the last copy,
	// and a copy is due when the gap ends (ResendHandshake).
	deferred bool
}

// isInitiation reports whether pkt is a WireGuard handshake initiation.
func isInitiation(pkt []byte) bool {
	return len(pkt) == device.MessageInitiationSize && pkt[0] == device.MessageInitiationType
}

// isResponse reports whether pkt is a WireGuard handshake response.
func isResponse(pkt []byte) bool {
	return len(pkt) == device.MessageResponseSize && pkt[0] == device.MessageResponseType
}

// outbound notes a handshake message wireguard-go sends to the peer,
// along a route or (routed false) none yet, and keeps it: an initiation
// or a response replaces the last (wireguard-go holds one handshake per
// peer), and a response means a session is being made.
func (h *handshake) outbound(pkt []byte, routed bool, now time.Time) {
	resp := isResponse(pkt)
	if !resp && !isInitiation(pkt) {
		return
	}
	if resp {
		h.session.Store(true)
	}
	h.mu.Lock()
	h.msg = append(h.msg[:0:0], pkt...)
	h.made, h.sent, h.resent = now, time.Time{}, 0
	if routed {
		h.sent = now
	}
	h.responding.Store(resp)
	h.mu.Unlock()
}

// responded notes a response from the peer: a session is being made, and
// the initiation kept is done with.
func (h *handshake) responded() {
	h.session.Store(true)
	h.mu.Lock()
	if !h.responding.Load() {
		h.msg = nil
	}
	h.mu.Unlock()
}

// confirmed notes transport data from the peer while a response is kept:
// the initiator has the session, and the response is done with.
func (h *handshake) confirmed() {
	h.mu.Lock()
	if h.responding.Load() {
		h.msg = nil
		h.responding.Store(false)
	}
	h.mu.Unlock()
}

// due reports whether the kept message is to be sent again now: kept,
// fresh, and not sent too recently or too often. A stale one is dropped.
func (h *handshake) due(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dueLocked(now)
}

func (h *handshake) dueLocked(now time.Time) bool {
	switch {
	case h.msg == nil:
		return false
	case now.Sub(h.made) >= device.RekeyTimeout:
		h.msg = nil
		h.responding.Store(false)
		return false
	}
	return now.Sub(h.sent) >= handshakeResendGap && h.resent < maxHandshakeResends
}

// deferCopy reports how long until the kept message may go again when only
// handshakeResendGap holds it back now, and then notes that a copy is
// deferred to the gap's end: a burst of notes within the gap defers one.
func (h *handshake) deferCopy(now time.Time) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msg == nil || h.deferred || h.resent >= maxHandshakeResends || now.Sub(h.made) >= device.RekeyTimeout {
		return 0, false
	}
	wait := handshakeResendGap - now.Sub(h.sent)
	if wait <= 0 {
		return 0, false
	}
	h.deferred = true
	return wait, true
}

// undefer notes that the deferred copy's time has come.
func (h *handshake) undefer() {
	h.mu.Lock()
	h.deferred = false
	h.mu.Unlock()
}

// take returns the message to send again and counts the copy, or nil when
// it is no longer due.
func (h *handshake) take(now time.Time) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.dueLocked(now) {
		return nil
	}
	h.sent = now
	h.resent++
	return h.msg
}

// kick reports whether to ask for a handshake now that the peer sent
// transport data while no session was seen: none asked for within
// handshakeKickGap.
func (h *handshake) kick(now time.Time) bool {
	last := h.lastKick.Load()
	if now.UnixNano()-last < int64(handshakeKickGap) {
		return false
	}
	return h.lastKick.CompareAndSwap(last, now.UnixNano())
}

// ResendHandshake sends the peer's last handshake message (an initiation
// or a response) again along its current route, when it is still
// unanswered and fresh (see above). The path manager calls it when a route
// to the peer may just have become usable, or the peer just showed it is
// up; calls with nothing to send cost a map lookup.
func (b *Bind) ResendHandshake(peer crypto.PublicKey) {
	v, ok := b.eps.Load(peer)
	if !ok {
		return
	}
	ep := v.(*PeerEndpoint)
	// Asked first: the route's lookup counts as traffic to the peer.
	now := time.Now()
	if !ep.hs.due(now) {
		// Too soon after the last copy, which the note may be the first
		// news that the path can carry (the peer's relay binding came up
		// just after it went): the copy goes when the gap ends, not at
		// the next note, which may be a punch round away.
		if wait, ok := ep.hs.deferCopy(now); ok {
			time.AfterFunc(wait, func() {
				ep.hs.undefer()
				b.ResendHandshake(peer)
			})
		}
		return
	}
	r := b.router.RouteTo(peer)
	if r == nil {
		return
	}
	pkt := ep.hs.take(now)
	if pkt == nil {
		return
	}
	// The copy is never written to again (outbound replaces the slice),
	// so the route may read it after the lock.
	if err := r.Send([][]byte{pkt}, peer); err == nil {
		b.Stats.HandshakesResent.Add(1)
	}
}

// fromPeer is the endpoint for a WireGuard packet received from peer,
// after noting what the packet says of the session (received).
func (b *Bind) fromPeer(peer crypto.PublicKey, pkt []byte) *PeerEndpoint {
	ep := b.Endpoint(peer)
	b.received(ep, pkt)
	return ep
}

// received notes what a WireGuard packet from ep's peer says of the
// session: a response answers the initiation kept, transport data the
// response kept, and transport data with no session seen asks for a
// handshake (Handlers.NoSession).
func (b *Bind) received(ep *PeerEndpoint, pkt []byte) {
	switch pkt[0] {
	case device.MessageResponseType:
		ep.hs.responded()
	case device.MessageTransportType:
		if ep.hs.responding.Load() {
			ep.hs.confirmed()
		}
		if !ep.hs.session.Load() && ep.hs.kick(time.Now()) && b.handler.NoSession != nil {
			b.Stats.HandshakesAsked.Add(1)
			b.handler.NoSession(ep.Key)
		}
	}
}
