package relayclient

import (
	"bytes"
	"log/slog"
	"net/netip"
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
	// key is the relay's public key, which proofs are made for: the
	// coordinator's, or a relay node's.
	key crypto.PublicKey
	// answered is the last challenge proved; only an OK echoing it counts.
	answered  []byte
	route     bind.Route // non-nil while bound
	lastOK    time.Time
	nextHello time.Time
	// downSince is when the binding was last lost (or the start): the TCP
	// relay's grace runs from it.
	downSince time.Time
}

// setServer switches to the relay at addr proving to key; an invalid addr
// means none. A change drops the binding and says hello at once.
func (u *udpBinding) setServer(addr netip.AddrPort, key crypto.PublicKey, now time.Time) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if addr == u.server && key == u.key {
		return
	}
	u.unbind(now)
	u.server, u.key, u.answered = addr, key, nil
	u.nextHello = now
}

// unbind drops the binding, if any.
func (u *udpBinding) unbind(now time.Time) {
	if u.route != nil {
		u.route, u.downSince = nil, now
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
// (which the relay confirms with an OK).
func (u *udpBinding) hello(now time.Time) {
	pkt := wire.RelayFrame{Type: wire.RelayHello, Key: u.priv.Public()}.Marshal()
	if err := u.socks.WriteTo(pkt, u.server); err != nil {
		u.log.Debug("relay hello not sent", "relay", u.server, "err", err)
	}
	if u.route != nil {
		u.nextHello = now.Add(u.timing.Refresh)
	} else {
		u.nextHello = now.Add(u.timing.Retry)
	}
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
