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

// Change flags of CHANGE-REQUEST (RFC 5780 §7.2).
const (
	ChangeIP   = 0x04
	ChangePort = 0x02
)

// Prober runs STUN transactions over a Transport; responses arrive through
// HandleSTUN from the Bind.
type Prober struct {
	tr Transport

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]chan Response
}

// NewProber returns a prober sending through tr.
func NewProber(tr Transport) *Prober {
	return &Prober{tr: tr, pending: make(map[[stun.TransactionIDSize]byte]chan Response)}
}

// ErrNoResponse means the server didn't answer any retransmission.
var ErrNoResponse = errors.New("no STUN response")

// Query sends a Binding request to server, retransmitting until an answer,
// the retries run out or ctx ends. change asks the server to answer from
// another address (0 for none).
func (p *Prober) Query(ctx context.Context, server netip.AddrPort, change uint32) (Response, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if change != 0 {
		setters = append(setters, changeRequest(change))
	}
	setters = append(setters, stun.Fingerprint)
	msg, err := stun.Build(setters...)
	if err != nil {
		return Response{}, fmt.Errorf("build STUN request: %w", err)
	}
	ch := make(chan Response, 1)
	p.mu.Lock()
	p.pending[msg.TransactionID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, msg.TransactionID)
		p.mu.Unlock()
	}()
	start := time.Now()
	rto := stunRTO
	for range stunRetries {
		if err := p.tr.WriteTo(msg.Raw, server); err != nil {
			return Response{}, fmt.Errorf("send STUN request to %s: %w", server, err)
		}
		t := time.NewTimer(rto)
		select {
		case r := <-ch:
			t.Stop()
			r.RTT = time.Since(start)
			return r, nil
		case <-ctx.Done():
			t.Stop()
			return Response{}, fmt.Errorf("STUN %s: %w", server, ctx.Err())
		case <-t.C:
		}
		rto *= 2
	}
	return Response{}, fmt.Errorf("STUN %s: %w after %d tries", server, ErrNoResponse, stunRetries)
}

// HandleSTUN takes a STUN packet from the shared socket. Unknown
// transactions and malformed messages are ignored.
func (p *Prober) HandleSTUN(pkt []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: append([]byte{}, pkt...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		return
	}
	p.mu.Lock()
	ch, ok := p.pending[m.TransactionID]
	p.mu.Unlock()
	if !ok {
		return
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		return
	}
	r := Response{Mapped: udpAddrPort(xa.IP, xa.Port), Origin: from}
	var oa stun.OtherAddress
	if oa.GetFrom(m) == nil {
		r.Other = udpAddrPort(oa.IP, oa.Port)
	}
	select {
	case ch <- r:
	default:
	}
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
