// Package relayclient binds this node to a UDP relay: it proves the node's
// key to the relay (hello → challenge → auth → ok) and refreshes the binding,
// which also keeps the NAT mapping towards the relay open. While bound, the
// path manager may route peers without a direct path through the relay.
package relayclient

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// Relay binding timing, agreed with the relay: see wire.RelayRefresh.
const (
	// refresh re-proves the binding and keeps the NAT mapping open.
	refresh = wire.RelayRefresh
	// retry re-sends a hello quickly while unbound.
	retry = wire.RelayRetry
	// expiry drops a binding the relay stopped confirming.
	expiry = wire.RelayExpiry
)

// Transport sends from the shared socket and makes relay routes (the Bind).
type Transport interface {
	WriteTo(pkt []byte, to netip.AddrPort) error
	UDPRelay(addr netip.AddrPort) bind.Route
}

// Client keeps one relay binding.
type Client struct {
	priv     crypto.PrivateKey
	tr       Transport
	log      *slog.Logger
	onChange func(bind.Route)

	mu     sync.Mutex
	server netip.AddrPort
	// key is the relay's public key, which proofs are made for: the
	// coordinator's, or a relay node's.
	key    crypto.PublicKey
	lastOK time.Time
	bound  bool
	// answered is the last challenge proved; only an OK echoing it counts.
	answered []byte
}

// New returns a client; onChange hears the relay route, or nil when lost.
func New(priv crypto.PrivateKey, tr Transport, log *slog.Logger, onChange func(bind.Route)) *Client {
	return &Client{priv: priv, tr: tr, log: log, onChange: onChange}
}

// SetServer sets the relay: its address and the key it proves with.
func (c *Client) SetServer(addr netip.AddrPort, key crypto.PublicKey) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	c.mu.Lock()
	changed := c.server != addr || c.key != key
	c.server, c.key = addr, key
	wasBound := c.bound
	if changed {
		c.bound = false
	}
	c.mu.Unlock()
	if changed && wasBound {
		c.onChange(nil)
	}
	if changed {
		c.hello()
	}
}

// Run refreshes the binding until ctx ends.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTimer(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		lapsed := c.bound && time.Since(c.lastOK) > expiry
		if lapsed {
			c.bound = false
		}
		bound := c.bound
		c.mu.Unlock()
		if lapsed {
			c.log.Warn("relay stopped confirming; relay route withdrawn")
			c.onChange(nil)
		}
		c.hello()
		if bound {
			t.Reset(refresh)
		} else {
			t.Reset(retry)
		}
	}
}

func (c *Client) hello() {
	c.mu.Lock()
	server := c.server
	c.mu.Unlock()
	if !server.IsValid() {
		return
	}
	pkt := wire.RelayFrame{Type: wire.RelayHello, Key: c.priv.Public()}.Marshal()
	if err := c.tr.WriteTo(pkt, server); err != nil {
		c.log.Debug("relay hello not sent", "relay", server, "err", err)
	}
}

// HandleControl takes a relay control frame from the shared socket.
func (c *Client) HandleControl(pkt []byte, from netip.AddrPort) {
	c.mu.Lock()
	server := c.server
	c.mu.Unlock()
	if from != server {
		return
	}
	f, err := wire.ParseRelay(pkt)
	if err != nil {
		return
	}
	switch f.Type {
	case wire.RelayChallenge:
		c.mu.Lock()
		key := c.key
		c.mu.Unlock()
		proof, err := crypto.Proof(c.priv, key, wire.RelayProofLabel, f.Challenge)
		if err != nil {
			c.log.Warn("relay proof", "err", err)
			return
		}
		c.mu.Lock()
		c.answered = append(c.answered[:0], f.Challenge...)
		c.mu.Unlock()
		auth := wire.RelayFrame{Type: wire.RelayAuth, Key: c.priv.Public(), Challenge: f.Challenge, Proof: proof}
		if err := c.tr.WriteTo(auth.Marshal(), server); err != nil {
			c.log.Debug("relay auth not sent", "err", err)
		}
	case wire.RelayOK:
		c.mu.Lock()
		if !bytes.Equal(f.Challenge, c.answered) {
			c.mu.Unlock()
			return
		}
		first := !c.bound
		c.bound, c.lastOK = true, time.Now()
		c.mu.Unlock()
		if first {
			c.log.Info("relay bound", "relay", server)
			c.onChange(c.tr.UDPRelay(server))
		}
	}
}
