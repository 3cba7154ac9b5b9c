package relayclient

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// udpBinding keeps this node bound to one UDP relay: it proves the node's
// key (hello → challenge → auth → ok) and re-proves it every Refresh, which
// also keeps the NAT mapping towards the relay open. It belongs to
// Relays.Run's goroutine, so nothing in it is locked.
type udpBinding struct {
	priv   crypto.PrivateKey
	socks  Sockets
	timing Timing
	log    *slog.Logger

	server netip.AddrPort // invalid: no relay
	// servers are the relay's addresses (IPv4, then IPv6), server one of
	// them: while unbound, a hello that can't be sent, or helloTries
	// unanswered, move on to the next (an IPv6-only node can't send to
	// the IPv4 one; a network may drop one family's UDP).
	servers []netip.AddrPort
	tries   int
	// key is the relay's public key, which proofs are made for: the
	// coordinator's, or a relay node's.
	key crypto.PublicKey
	// answered is the last challenge proved; only an OK echoing it counts.
	answered  []byte
	route     bind.Route // non-nil while bound
	lastOK    time.Time
	nextHello time.Time
	// downSince is when the binding was last lost (or the start), and
	// helloSince when the first hello since went out (zero: none yet, or
	// bound): the TCP relay's waits run from them.
	downSince  time.Time
	helloSince time.Time
}

// helloTries is how many hellos one address of the relay gets while
// unbound before the next address is tried.
const helloTries = 2

// setServers switches to the relay at addrs proving to key; none means no
// relay. A change drops the binding and says hello at once, to the first.
func (u *udpBinding) setServers(addrs []netip.AddrPort, key crypto.PublicKey, now time.Time) {
	addrs = slices.Clone(addrs)
	for i, a := range addrs {
		addrs[i] = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	if slices.Equal(addrs, u.servers) && key == u.key {
		return
	}
	u.unbind(now)
	u.servers, u.key, u.answered, u.tries = addrs, key, nil, 0
	u.helloSince = time.Time{}
	u.server = netip.AddrPort{}
	if len(addrs) > 0 {
		u.server = addrs[0]
	}
	u.nextHello = now
}

// next moves an unbound relay to its next address.
func (u *udpBinding) next() {
	i := slices.Index(u.servers, u.server)
	u.server, u.answered, u.tries = u.servers[(i+1)%len(u.servers)], nil, 0
}

// unbind drops the binding, if any.
func (u *udpBinding) unbind(now time.Time) {
	if u.route != nil {
		u.route, u.downSince, u.helloSince = nil, now, time.Time{}
	}
}

// tick expires a binding the relay stopped confirming and sends the hello
// that is due.
func (u *udpBinding) tick(now time.Time) {
	if u.route != nil && now.Sub(u.lastOK) > u.timing.Expiry {
		u.log.Warn("UDP relay stopped confirming; its route is withdrawn", "relay", u.server, "after", u.timing.Expiry)
		u.unbind(now)
		u.nextHello = now
	}
	if !u.server.IsValid() || now.Before(u.nextHello) {
		return
	}
	u.hello(now)
}

// hello asks the relay for a challenge now: a first binding, or a refresh
// (which the relay confirms with an OK). Unbound after helloTries hellos,
// it moves on to the relay's next address (IPv6 after IPv4).
func (u *udpBinding) hello(now time.Time) {
	if u.route == nil && u.tries >= helloTries && len(u.servers) > 1 {
		from := u.server
		u.next()
		u.log.Info("UDP relay does not answer at this address; trying the next", "relay", from, "next", u.server, "hellos", helloTries)
	}
	pkt := wire.RelayFrame{Type: wire.RelayHello, Key: u.priv.Public()}.Marshal()
	// An address this host can't send to (no route for its family) is
	// passed over at once, each at most once a tick.
	for range u.servers {
		err := u.socks.WriteTo(pkt, u.server)
		if err == nil || u.route != nil || len(u.servers) < 2 {
			if err != nil {
				u.log.Debug("relay hello not sent", "relay", u.server, "err", err)
			}
			break
		}
		u.log.Debug("relay hello not sent; trying the next address", "relay", u.server, "err", err)
		u.next()
	}
	u.tries++
	if u.route == nil && u.helloSince.IsZero() {
		u.helloSince = now
	}
	if u.route != nil {
		u.nextHello = now.Add(u.timing.Refresh)
	} else {
		u.nextHello = now.Add(u.timing.Retry)
	}
}

// silent reports whether the UDP relay has left this node unbound long
// enough to open the TCP relay: a hello unanswered for helloWait, or no
// relay to say hello to for tcpGrace.
func (u *udpBinding) silent(now time.Time) bool {
	return u.route == nil && !now.Before(u.silentAt())
}

// silentAt is when an unbound node's UDP relay counts as silent.
func (u *udpBinding) silentAt() time.Time {
	if !u.helloSince.IsZero() {
		return u.helloSince.Add(u.timing.HelloWait)
	}
	return u.downSince.Add(u.timing.TCPGrace)
}

// wake is when tick has work next; zero when it has none.
func (u *udpBinding) wake() time.Time {
	if !u.server.IsValid() {
		return time.Time{}
	}
	if u.route != nil {
		return earliest(u.nextHello, u.lastOK.Add(u.timing.Expiry))
	}
	return u.nextHello
}

// handle takes a control frame from the relay: it answers a challenge, and
// an OK echoing the challenge it answered binds.
func (u *udpBinding) handle(pkt []byte, from netip.AddrPort, now time.Time) {
	if from != u.server {
		return
	}
	f, err := wire.ParseRelay(pkt)
	if err != nil {
		return
	}
	switch f.Type {
	case wire.RelayChallenge:
		proof, err := crypto.Proof(u.priv, u.key, wire.RelayProofLabel, f.Challenge)
		if err != nil {
			u.log.Warn("relay proof", "relay", u.server, "err", err)
			return
		}
		u.answered = append(u.answered[:0], f.Challenge...)
		auth := wire.RelayFrame{Type: wire.RelayAuth, Key: u.priv.Public(), Challenge: f.Challenge, Proof: proof}
		if err := u.socks.WriteTo(auth.Marshal(), u.server); err != nil {
			u.log.Debug("relay auth not sent", "relay", u.server, "err", err)
		}
	case wire.RelayOK:
		if u.answered == nil || !bytes.Equal(f.Challenge, u.answered) ||
			!crypto.VerifyProof(u.priv, u.key, wire.RelayOKProofLabel, f.Challenge, f.Proof) {
			return
		}
		u.lastOK = now
		if u.route == nil {
			u.log.Info("relay bound", "relay", u.server)
			u.route = u.socks.UDPRelay(u.server)
			u.nextHello = now.Add(u.timing.Refresh)
		}
	}
}

// earliest is the earlier of two times, a zero one meaning never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
