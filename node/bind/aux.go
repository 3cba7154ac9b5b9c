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

// OpenAux opens n auxiliary sockets and returns their numbers. The sockets
// are created with no lock held (the packet paths take b.mu), then
// registered together.
func (b *Bind) OpenAux(n int) ([]int, error) {
	if b.auxListen == nil {
		return nil, ErrNoAux
	}
	conns := make([]UDPConn, 0, n)
	var err error
	for range n {
		c, lerr := b.auxListen()
		if lerr != nil {
			err = fmt.Errorf("open auxiliary socket %d of %d: %w", len(conns)+1, n, lerr)
			break
		}
		conns = append(conns, c)
	}
	b.mu.Lock()
	if !b.open {
		b.mu.Unlock()
		closeAll(conns)
		return nil, ErrClosed
	}
	ids := make([]int, 0, len(conns))
	for _, c := range conns {
		b.auxNext++
		b.aux[b.auxNext] = c
		ids = append(ids, b.auxNext)
		go b.readAux(c, b.auxNext, b.auxCh)
	}
	b.mu.Unlock()
	return ids, err
}

// CloseAux closes auxiliary sockets, after releasing b.mu.
func (b *Bind) CloseAux(ids ...int) {
	conns := make([]UDPConn, 0, len(ids))
	b.mu.Lock()
	for _, id := range ids {
		if c, ok := b.aux[id]; ok {
			conns = append(conns, c)
			delete(b.aux, id)
		}
	}
	b.mu.Unlock()
	closeAll(conns)
}

func closeAll(conns []UDPConn) {
	for _, c := range conns {
		c.Close()
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
					eps[0] = b.fromPeer(peer, p.pkt)
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

// takeAllAux removes every auxiliary socket for the caller to close once
// b.mu is released; b.mu is held.
func (b *Bind) takeAllAux() []UDPConn {
	conns := make([]UDPConn, 0, len(b.aux))
	for id, c := range b.aux {
		conns = append(conns, c)
		delete(b.aux, id)
	}
	return conns
}
