package coordinator

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// A node's word about where it can be reached is only a claim: a hostile
// member could name a third party's address and make every peer punch it.
// The coordinator offers a node's public candidates to its peers only when
// they stand on what the coordinator itself saw: the sources of the node's
// authenticated STUN requests (wire.STUNAuthLabel) and of its stream.
const (
	// sightingTTL is how long a STUN source stays evidence. Nodes re-STUN
	// every 20-25 s, so a live mapping is seen many times over; one unseen
	// for this long is gone.
	sightingTTL = 10 * time.Minute
	// maxSightings bounds the sources kept per node: a NAT with an address
	// pool (RFC 4787 "arbitrary" pooling) shows a few; more would only be
	// churn.
	maxSightings = 8
)

// sighting is one source the coordinator saw a node's request come from.
type sighting struct {
	addr netip.AddrPort
	at   time.Time
}

// evidence is the coordinator's first-hand record of nodes' public
// addresses, and the stunserver.Authenticator that fills it. It has its own
// lock: the STUN server calls it on its packet path.
type evidence struct {
	priv  crypto.PrivateKey
	known func(crypto.PublicKey) bool
	// fresh is told of a node's new source, so a report held back for want
	// of it can be applied; it must not block.
	fresh func(crypto.PublicKey)
	now   func() time.Time

	mu   sync.Mutex
	pass map[crypto.PublicKey]string // STUN passwords of known nodes, computed once
	seen map[crypto.PublicKey][]sighting
}

func newEvidence(priv crypto.PrivateKey, known func(crypto.PublicKey) bool, fresh func(crypto.PublicKey)) *evidence {
	return &evidence{
		priv:  priv,
		known: known,
		fresh: fresh,
		now:   time.Now,
		pass:  make(map[crypto.PublicKey]string),
		seen:  make(map[crypto.PublicKey][]sighting),
	}
}

// Password implements stunserver.Authenticator: the USERNAME is a node's
// public key, and only registered nodes have a password. The X25519 behind
// it is computed once per node.
func (e *evidence) Password(username string) (string, bool) {
	key, err := crypto.ParsePublicKey(username)
	if err != nil || !e.known(key) {
		return "", false
	}
	e.mu.Lock()
	p, ok := e.pass[key]
	e.mu.Unlock()
	if ok {
		return p, true
	}
	p, err = wire.STUNPassword(e.priv, key)
	if err != nil {
		return "", false
	}
	e.mu.Lock()
	e.pass[key] = p
	e.mu.Unlock()
	return p, true
}

// Observed implements stunserver.Authenticator.
func (e *evidence) Observed(username string, src netip.AddrPort) {
	key, err := crypto.ParsePublicKey(username)
	if err != nil {
		return
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	now := e.now()
	e.mu.Lock()
	s := e.seen[key]
	i := slices.IndexFunc(s, func(x sighting) bool { return x.addr == src })
	isNew := i < 0
	if isNew {
		s = append(s, sighting{addr: src})
		i = len(s) - 1
	}
	s[i].at = now
	// Newest first; the oldest fall off.
	slices.SortFunc(s, func(a, b sighting) int { return b.at.Compare(a.at) })
	e.seen[key] = s[:min(len(s), maxSightings)]
	e.mu.Unlock()
	if isNew && e.fresh != nil {
		e.fresh(key)
	}
}

// forget drops what is known of a removed node.
func (e *evidence) forget(key crypto.PublicKey) {
	e.mu.Lock()
	delete(e.pass, key)
	delete(e.seen, key)
	e.mu.Unlock()
}

// filter splits a node's reported candidates into those that may reach its
// peers and those held back: a public address must be one the coordinator
// saw the node use (its stream's source or a recent STUN source, by
// wire.Vouches). Private, shared and local addresses pass: peers
// probe those only inside their own LAN prefixes (node/scope.go).
func (e *evidence) filter(key crypto.PublicKey, eps []wire.Endpoint, stream netip.Addr) (kept, held []wire.Endpoint) {
	now := e.now()
	e.mu.Lock()
	var seen []netip.Addr
	for _, s := range e.seen[key] {
		if now.Sub(s.at) <= sightingTTL {
			seen = append(seen, s.addr.Addr())
		}
	}
	e.mu.Unlock()
	if stream.IsValid() {
		seen = append(seen, stream.Unmap())
	}
	for _, ep := range eps {
		ip := ep.Addr.Addr().Unmap()
		if !wire.PublicAddr(ip) || slices.ContainsFunc(seen, func(s netip.Addr) bool { return wire.Vouches(s, ip) }) {
			kept = append(kept, ep)
		} else {
			held = append(held, ep)
		}
	}
	return kept, held
}
