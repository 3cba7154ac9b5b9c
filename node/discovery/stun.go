// Package discovery finds where this node can be reached: STUN through the
// shared WireGuard socket (so the mapping learned is the tunnel's own), local
// interface addresses, and the NAT's behaviour (RFC 4787, RFC 5780).
package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// STUN retransmission (RFC 8489 §6.2.1): an initial RTO of 500 ms, doubled
// on each retry. Four tries wait 0.5+1+2+4 = 7.5 s: enough for a lossy path,
// short enough that a blocked one is reported within a gathering; callers
// bound the whole exchange with their context too.
const (
	stunRTO     = 500 * time.Millisecond
	stunRetries = 4
)

// Transport sends from the shared socket.
type Transport interface {
	WriteTo(pkt []byte, to netip.AddrPort) error
}

// Response is what a STUN Binding response told us.
type Response struct {
	Mapped netip.AddrPort // XOR-MAPPED-ADDRESS: our address as the server saw it
	Other  netip.AddrPort // OTHER-ADDRESS (RFC 5780 §7.4), when the server has one
	Origin netip.AddrPort // where the response came from
	RTT    time.Duration
}

// Credentials are RFC 8489 short-term credentials (§9.1): the node's
// requests to its coordinator's STUN server carry them (wire.STUNPassword),
// and the server's answers must be signed with them.
type Credentials struct {
	Username string
	Password string
}

// Target is a STUN server to query and the credentials its requests carry
// (nil: none, as for any public STUN server).
type Target struct {
	Addr netip.AddrPort
	Auth *Credentials
}

// Change flags of CHANGE-REQUEST (RFC 5780 §7.2).
const (
	ChangeIP   = 0x04
	ChangePort = 0x02
)

// Prober runs STUN transactions over a Transport; responses arrive through
// HandleSTUN from the Bind.
type Prober struct {
	tr Transport
	// life holds the lifetime probe's waits (lifetime.go).
	life lifetimeTiming

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]transaction
}

// transaction is a request waiting for its answer.
type transaction struct {
	answer chan answer
	// integrity checks a signed request's answer; nil when unsigned.
	integrity stun.MessageIntegrity
}

// answer is a response, or errAuthUnknown.
type answer struct {
	resp Response
	err  error
}

// NewProber returns a prober sending through tr.
func NewProber(tr Transport) *Prober {
	return &Prober{tr: tr, life: defaultLifetime, pending: make(map[[stun.TransactionIDSize]byte]transaction)}
}

// ErrNoResponse means the server didn't answer any retransmission.
var ErrNoResponse = errors.New("no STUN response")

// errAuthUnknown is a server's 420 for USERNAME or MESSAGE-INTEGRITY: a
// coordinator older than short-term credentials. The request is sent again
// unsigned, so a newer node still learns its mapping from it.
var errAuthUnknown = errors.New("STUN server does not take credentials")

// Query sends a Binding request to server, retransmitting until an answer,
// the retries run out or ctx ends. change asks the server to answer from
// another address (0 for none).
func (p *Prober) Query(ctx context.Context, server Target, change uint32) (Response, error) {
	var extra []stun.Setter
	if change != 0 {
		extra = append(extra, changeRequest(change))
	}
	r, err := p.query(ctx, server, extra, retransmit)
	if errors.Is(err, errAuthUnknown) {
		return p.query(ctx, Target{Addr: server.Addr}, extra, retransmit)
	}
	return r, err
}

// schedule is when a request is sent: tries, the first wait for an answer,
// and its growth per try.
type schedule struct {
	tries  int
	wait   time.Duration
	growth time.Duration
}

// retransmit is RFC 8489 §6.2.1's: stunRetries tries, the wait doubling.
var retransmit = schedule{tries: stunRetries, wait: stunRTO, growth: 2}

func (p *Prober) query(ctx context.Context, server Target, extra []stun.Setter, sched schedule) (Response, error) {
	setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, extra...)
	tx := transaction{answer: make(chan answer, 1)}
	if server.Auth != nil {
		tx.integrity = stun.NewShortTermIntegrity(server.Auth.Password)
		setters = append(setters, stun.NewUsername(server.Auth.Username), tx.integrity)
	}
	setters = append(setters, stun.Fingerprint)
	msg, err := stun.Build(setters...)
	if err != nil {
		return Response{}, fmt.Errorf("build STUN request: %w", err)
	}
	p.mu.Lock()
	p.pending[msg.TransactionID] = tx
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, msg.TransactionID)
		p.mu.Unlock()
	}()
	start := time.Now()
	rto := sched.wait
	for range sched.tries {
		if err := p.tr.WriteTo(msg.Raw, server.Addr); err != nil {
			return Response{}, fmt.Errorf("send STUN request to %s: %w", server.Addr, err)
		}
		t := time.NewTimer(rto)
		select {
		case a := <-tx.answer:
			t.Stop()
			if a.err != nil {
				return Response{}, fmt.Errorf("STUN %s: %w", server.Addr, a.err)
			}
			a.resp.RTT = time.Since(start)
			return a.resp, nil
		case <-ctx.Done():
			t.Stop()
			return Response{}, fmt.Errorf("STUN %s: %w", server.Addr, ctx.Err())
		case <-t.C:
		}
		rto *= sched.growth
	}
	return Response{}, fmt.Errorf("STUN %s: %w after %d tries", server.Addr, ErrNoResponse, sched.tries)
}

// HandleSTUN takes a STUN packet from the shared socket. Unknown
// transactions, malformed messages and answers to a signed request that
// are not signed with its key are ignored.
func (p *Prober) HandleSTUN(pkt []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: append([]byte{}, pkt...)}
	if err := m.Decode(); err != nil {
		return
	}
	p.mu.Lock()
	tx, ok := p.pending[m.TransactionID]
	p.mu.Unlock()
	if !ok {
		return
	}
	var a answer
	switch {
	case m.Type == stun.BindingError && tx.integrity != nil && authUnknown(m):
		a.err = errAuthUnknown
	case m.Type != stun.BindingSuccess:
		return
	case tx.integrity != nil && tx.integrity.Check(m) != nil:
		return
	default:
		r, ok := success(m, from)
		if !ok {
			return
		}
		a.resp = r
	}
	select {
	case tx.answer <- a:
	default:
	}
}

// authUnknown reports whether an error response is a 420 naming the
// credential attributes.
func authUnknown(m *stun.Message) bool {
	var code stun.ErrorCodeAttribute
	var unknown stun.UnknownAttributes
	if code.GetFrom(m) != nil || code.Code != stun.CodeUnknownAttribute || unknown.GetFrom(m) != nil {
		return false
	}
	for _, t := range unknown {
		if t == stun.AttrUsername || t == stun.AttrMessageIntegrity {
			return true
		}
	}
	return false
}

// success reads a Binding success response.
func success(m *stun.Message, from netip.AddrPort) (Response, bool) {
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		return Response{}, false
	}
	r := Response{Mapped: udpAddrPort(xa.IP, xa.Port), Origin: from}
	var oa stun.OtherAddress
	if oa.GetFrom(m) == nil {
		r.Other = udpAddrPort(oa.IP, oa.Port)
	}
	return r, true
}

func udpAddrPort(ip []byte, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// changeRequest adds CHANGE-REQUEST, which pion/stun defines the type of but
// doesn't build.
func changeRequest(flags uint32) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: binary.BigEndian.AppendUint32(nil, flags)}
}
