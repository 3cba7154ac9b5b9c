package relayclient

import (
	"context"
	"crypto/rand"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// A node keeps using a relay node only while it carries the node's
// traffic. Every Timing.Check, while the chosen relay is a relay node (the
// coordinator's relay is the fallback, nothing to move to), a check round
// asks two things of it:
//
//   - an echo: a data frame this node addresses to itself through the
//     relay (wire.AppendRelayEcho), sent with a refresh of the binding.
//     When the relay confirms the refresh but the echo does not come
//     back, the relay is alive and reachable and did not carry the frame.
//   - when the relay confirmed nothing in the last round: a hello to the
//     coordinator's relay (the witness). Its challenge shows this node's
//     UDP works, so the relay node's silence is the relay's (a crashed
//     relay server), not this node's network.
//
// A round where neither the relay nor the witness answered proves nothing
// (this node's own network may be down) and counts for nothing.
// wire.RelayCheckMisses failing rounds in a row are a verdict, reported to
// the coordinator (Options.Report), which suspends the relay for every
// node at once: the two ends of a relayed pair must stay on one relay.
//
// The path manager adds the evidence an echo can't give (a relay can tell
// a node's echo from its traffic to others): relayed pings to an online
// peer that went unanswered (PeerUnanswered). It is reported when the
// relay confirmed the binding after the first of them was sent; the
// coordinator acts on it only when the peer reports the same of this node,
// so a dead peer never gets the relay blamed.
//
// What a check sends is bounded: per Timing.Check, one echo, one refresh
// and at most one witness hello; reports at most wire.RelayReportBurst,
// then one per wire.RelayReportEvery.

// checkMisses failing rounds in a row make a verdict.
const checkMisses = wire.RelayCheckMisses

// health is the check of the chosen relay node; it belongs to Run's
// goroutine.
type health struct {
	start       time.Time // the round in progress began; zero: none yet
	echo        [wire.RelayEchoTokenLen]byte
	echoSent    bool // an echo went out this round
	echoBack    bool // and came back
	witnessSent bool // a hello went to the witness this round
	witnessAt   time.Time
	misses      int
	next        time.Time // the next round
	carried     time.Time // an echo last came back
}

// peerMiss is the path manager's evidence against the relay in use: peer
// left relayed pings sent through via unanswered, the first at since.
type peerMiss struct {
	peer  crypto.PublicKey
	via   netip.AddrPort
	since time.Time
}

// PeerUnanswered tells the relay client that relayed pings to an online
// peer went unanswered, the first sent at since through the UDP relay at
// via (path.EventRelayUnanswered). It never blocks.
func (r *Relays) PeerUnanswered(peer crypto.PublicKey, via netip.AddrPort, since time.Time) {
	select {
	case r.misses <- peerMiss{peer: peer, via: unmapPort(via), since: since}:
	default:
		r.Stats.ControlDropped.Add(1)
	}
}

// HandleEcho takes an echo back from the relay (bind.Handlers.Echo). It
// never blocks: it runs on wireguard-go's receive goroutine.
func (r *Relays) HandleEcho(pkt []byte) {
	token, err := wire.ParseRelayEcho(pkt)
	if err != nil {
		return
	}
	select {
	case r.echoes <- token:
	default:
		r.Stats.ControlDropped.Add(1)
	}
}

// watching reports whether the chosen relay is a relay node, whose
// carrying is checked.
func (r *Relays) watching() bool {
	return r.chosen != (Candidate{}) && r.chosen != r.coordCand
}

// checkDue ends the check round that is over and starts the next.
func (r *Relays) checkDue(now time.Time) {
	if !r.watching() || now.Before(r.health.next) {
		return
	}
	r.judge()
	r.startRound(now)
}

// judge weighs the round that ends.
func (r *Relays) judge() {
	h := &r.health
	if h.start.IsZero() {
		return
	}
	r.Stats.Checks.Add(1)
	alive := r.udp.lastOK.After(h.start)
	witnessed := h.witnessSent && h.witnessAt.After(h.start)
	switch {
	case h.echoSent && h.echoBack:
		h.misses = 0
		return
	case h.echoSent && alive:
		r.log.Debug("relay confirmed the binding but did not carry this node's echo", "relay", r.udp.server, "misses", h.misses+1)
	case !alive && witnessed:
		r.log.Debug("relay silent while the coordinator's relay answers", "relay", r.udp.server, "misses", h.misses+1)
	default:
		return // no evidence either way
	}
	h.misses++
	if h.misses >= checkMisses {
		h.misses = 0
		r.report(nil, "its echoes did not come back, or it went silent while the coordinator's relay answered")
	}
}

// startRound sends the round's echo, refresh and witness hello.
func (r *Relays) startRound(now time.Time) {
	h := &r.health
	silent := !r.udp.lastOK.After(h.start) // nothing confirmed since the last round began (or ever)
	h.start, h.next = now, now.Add(r.timing.Check)
	h.echoSent, h.echoBack, h.witnessSent = false, false, false
	if r.udp.route != nil {
		rand.Read(h.echo[:]) // never fails (crypto/rand, Go 1.24+)
		frame := wire.AppendRelayData(nil, r.priv.Public(), wire.AppendRelayEcho(nil, h.echo))
		if err := r.socks.WriteTo(frame, r.udp.server); err != nil {
			r.log.Debug("relay echo not sent", "relay", r.udp.server, "err", err)
		} else {
			h.echoSent = true
		}
		r.udp.hello(now)
	}
	if (silent || r.udp.route == nil) && r.witness.IsValid() {
		pkt := wire.RelayFrame{Type: wire.RelayHello, Key: r.priv.Public()}.Marshal()
		if err := r.socks.WriteTo(pkt, r.witness); err != nil {
			r.log.Debug("hello to the coordinator's relay not sent", "relay", r.witness, "err", err)
		} else {
			h.witnessSent = true
		}
	}
}

// onEcho records an echo that came back.
func (r *Relays) onEcho(token [wire.RelayEchoTokenLen]byte, now time.Time) {
	if r.health.echoSent && token == r.health.echo {
		r.health.echoBack, r.health.carried = true, now
	}
}

// onWitness records the coordinator's relay answering a hello.
func (r *Relays) onWitness(pkt []byte, now time.Time) {
	if f, err := wire.ParseRelay(pkt); err == nil && f.Type == wire.RelayChallenge {
		r.health.witnessAt = now
	}
}

// onPeerMiss reports the path manager's evidence when it holds: the
// pings went through the relay node in use, and the relay confirmed the
// binding after the first of them (it is alive, and this node reaches it).
func (r *Relays) onPeerMiss(m peerMiss) {
	if !r.watching() || m.via != r.udp.server || !r.udp.lastOK.After(m.since) {
		r.log.Debug("unanswered relayed pings not reported: not through the relay node in use, or the relay unconfirmed since", "peer", m.peer.Short(), "via", m.via)
		return
	}
	r.report(&m.peer, "relayed pings to an online peer went unanswered")
}

// report tells the coordinator that the chosen relay did not carry, within
// the report budget.
func (r *Relays) report(peer *crypto.PublicKey, evidence string) {
	if !r.reports.Allow() {
		r.Stats.ReportsDropped.Add(1)
		return
	}
	args := []any{"relay", r.chosen.Addr, "key", r.chosen.Key.Short(), "evidence", evidence}
	if peer != nil {
		args = append(args, "peer", peer.Short())
	}
	r.log.Warn("relay does not carry this node's traffic; reported to the coordinator", args...)
	r.Stats.Reports.Add(1)
	r.onReport(r.chosen.Key, peer)
}

// resolveWitness resolves the coordinator's relay's address while a relay
// node is watched. It may wait for DNS (bounded by resolveTimeout), in
// Run's goroutine only.
func (r *Relays) resolveWitness(ctx context.Context) {
	if !r.watching() || r.witness.IsValid() || r.coordCand.Addr == "" || time.Now().Before(r.nextWitness) {
		return
	}
	ap, err := resolve(ctx, r.coordCand)
	if err != nil {
		r.nextWitness = time.Now().Add(r.timing.Refresh)
		return
	}
	r.witness = unmapPort(ap[0]) // the first that resolved: IPv4 where there is one
	w := r.witness
	r.witnessPub.Store(&w)
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
