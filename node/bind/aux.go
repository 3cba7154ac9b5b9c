package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/internal/wire"
)

// Auxiliary sockets serve the birthday technique against random-port
// symmetric NATs: the hard side opens many sockets so that its NAT holds
// many mappings towards the easy side, and the one the easy side's probes
// hit becomes the path (nat-traversal notes: 256 sockets, ~1024 probes for
// 98%). Sockets are numbered from 1; 0 is the main socket.

// auxQueue bounds packets from auxiliary sockets waiting for wireguard-go.
const auxQueue = 1024

// auxPacket is one packet read from an auxiliary socket.
type auxPacket struct {
	pkt  []byte
	from netip.AddrPort
	sock int
}

// ErrNoAux is returned when the Bind can't open auxiliary sockets.
var ErrNoAux = errors.New("auxiliary sockets are not available")

// OpenAux opens n auxiliary sockets and returns their numbers.
func (b *Bind) OpenAux(n int) ([]int, error) {
	if b.auxListen == nil {
		return nil, ErrNoAux
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return nil, ErrClosed
	}
	ids := make([]int, 0, n)
	for range n {
		c, err := b.auxListen()
		if err != nil {
			return ids, fmt.Errorf("open auxiliary socket %d of %d: %w", len(ids)+1, n, err)
		}
		b.auxNext++
		id := b.auxNext
		b.aux[id] = c
		ids = append(ids, id)
		go b.readAux(c, id, b.auxCh)
	}
	return ids, nil
}

// CloseAux closes auxiliary sockets.
func (b *Bind) CloseAux(ids ...int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		if c, ok := b.aux[id]; ok {
			c.Close()
			delete(b.aux, id)
		}
	}
}

// readAux feeds one auxiliary socket's packets to the receive path until
// the socket closes.
func (b *Bind) readAux(c UDPConn, id int, ch chan auxPacket) {
	buf := make([]byte, maxPacket)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := auxPacket{pkt: append([]byte(nil), buf[:n]...), from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), sock: id}
		select {
		case ch <- p:
		default:
			b.Stats.QueueDropped.Add(1)
		}
	}
}

// auxReceive is the ReceiveFunc for auxiliary sockets: WireGuard packets
// from known peers go to wireguard-go, discovery to the handler.
func (b *Bind) auxReceive(ch chan auxPacket, closed chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			var p auxPacket
			select {
			case p = <-ch:
			case <-closed:
				return 0, net.ErrClosed
			}
			switch wire.Classify(p.pkt) {
			case wire.KindWireGuard:
				if peer, ok := b.router.PeerAt(p.from); ok {
					sizes[0] = copy(bufs[0], p.pkt)
					eps[0] = b.Endpoint(peer)
					return 1, nil
				}
				b.Stats.UnknownPeer.Add(1)
			case wire.KindDisco:
				b.Stats.DiscoIn.Add(1)
				b.handler.Disco(p.pkt, p.from, p.sock)
			default:
				b.Stats.Garbage.Add(1)
			}
		}
	}
}

// WriteVia sends a raw packet from socket sock (0: the main socket).
func (b *Bind) WriteVia(pkt []byte, to netip.AddrPort, sock int) error {
	if sock == 0 {
		return b.WriteTo(pkt, to)
	}
	b.mu.RLock()
	c, ok := b.aux[sock]
	b.mu.RUnlock()
	if !ok {
		return fmt.Errorf("auxiliary socket %d: %w", sock, ErrClosed)
	}
	_, err := c.WriteToUDPAddrPort(pkt, to)
	return err
}

// closeAllAux closes every auxiliary socket; b.mu is held.
func (b *Bind) closeAllAux() {
	for id, c := range b.aux {
		c.Close()
		delete(b.aux, id)
	}
}
