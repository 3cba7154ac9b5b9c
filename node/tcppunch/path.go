package tcppunch

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Framing on a punched connection: each relay data frame is sent as
//
//	length (4, big-endian) | wire.RelayMagic | RelayData | source key | WireGuard packet
//
// The key is the sender's own, as a relay would write it, so the receiving
// Bind needs nothing new.
const (
	// lengthLen is the prefix size: uint32, since a frame may exceed 65535.
	lengthLen = 4
	// maxFrame bounds a frame: the largest WireGuard packet plus the
	// relay header, as the stream relay.
	maxFrame = wire.MaxRelayFrame
	// writeTimeout bounds one SendFrames call, so a stalled TCP connection
	// blocks wireguard-go's send path for at most this long; the path is
	// closed after it, since a partial write has broken the framing.
	writeTimeout = 2 * time.Second
	// readBuffer holds a few full-size frames, so small frames cost one
	// read system call per batch rather than two per frame.
	readBuffer = 4 * maxFrame
)

// Path is an authenticated, punched TCP connection to one peer. It
// implements bind.FrameSender.
type Path struct {
	conn    net.Conn
	self    crypto.PublicKey
	peer    crypto.PublicKey
	remote  netip.AddrPort
	deliver func(frame []byte)
	log     *slog.Logger

	wmu    sync.Mutex // one SendFrames at a time: frames must not interleave
	closed atomic.Bool
}

func newPath(c net.Conn, self, peer crypto.PublicKey, deliver func([]byte), log *slog.Logger) *Path {
	return &Path{
		conn:    c,
		self:    self,
		peer:    peer,
		remote:  addrPort(c.RemoteAddr()),
		deliver: deliver,
		log:     log,
	}
}

// addrPort is a TCP address as an AddrPort, IPv4 unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// RemoteAddr is the peer's address as this node's connection sees it.
func (p *Path) RemoteAddr() netip.AddrPort { return p.remote }

// Peer is the authenticated peer's key.
func (p *Path) Peer() crypto.PublicKey { return p.peer }

// SendFrames implements bind.FrameSender. Each frame is a relay data frame
// addressed to the peer (wire.AppendRelayData(nil, peer, packet)); it goes
// out with this node's key in its place, the source key the peer's Bind
// expects. The frames are not kept after the call returns.
func (p *Path) SendFrames(frames [][]byte) error {
	for _, f := range frames {
		if err := p.checkOutgoing(f); err != nil {
			return err
		}
	}
	const hdrLen = lengthLen + wire.RelayHeaderLen
	hdrs := make([]byte, hdrLen*len(frames))
	bufs := make(net.Buffers, 0, 2*len(frames))
	for i, f := range frames {
		h := hdrs[i*hdrLen : (i+1)*hdrLen : (i+1)*hdrLen]
		binary.BigEndian.PutUint32(h, uint32(len(f)))
		copy(h[lengthLen:], f[:len(wire.RelayMagic)+1])
		copy(h[lengthLen+len(wire.RelayMagic)+1:], p.self[:])
		bufs = append(bufs, h, f[wire.RelayHeaderLen:])
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("tcp path to %s: %w", p.remote, err)
	}
	// net.Buffers goes out in one writev.
	if _, err := bufs.WriteTo(p.conn); err != nil {
		p.conn.Close()
		return fmt.Errorf("tcp path to %s: send %d frames: %w", p.remote, len(frames), err)
	}
	return nil
}

// checkOutgoing rejects a frame this path must not carry.
func (p *Path) checkOutgoing(f []byte) error {
	if len(f) > maxFrame {
		return fmt.Errorf("tcp path to %s: frame of %d bytes exceeds %d", p.remote, len(f), maxFrame)
	}
	rf, err := wire.ParseRelay(f)
	if err != nil {
		return fmt.Errorf("tcp path to %s: %w", p.remote, err)
	}
	if rf.Type != wire.RelayData {
		return fmt.Errorf("tcp path to %s: frame type %d, only data frames (%d) are carried", p.remote, rf.Type, wire.RelayData)
	}
	if rf.Key != p.peer {
		return fmt.Errorf("tcp path to %s: frame for peer %s on the path to %s", p.remote, rf.Key.Short(), p.peer.Short())
	}
	return nil
}

// Run reads frames and hands each to Deliver until the connection dies,
// the peer breaks the framing, ctx ends, or Close is called. The
// connection is closed when it returns. It returns nil after Close,
// ctx's error after ctx ends, and otherwise why the path died.
func (p *Path) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.conn.Close() })
	defer stop()
	err := p.read()
	p.conn.Close()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case p.closed.Load():
		return nil
	}
	p.log.Info("tcp path down", "peer", p.peer.Short(), "remote", p.remote, "err", err)
	return err
}

func (p *Path) read() error {
	r := bufio.NewReaderSize(p.conn, readBuffer)
	var prefix [lengthLen]byte
	for {
		if _, err := io.ReadFull(r, prefix[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("tcp path to %s: the peer closed the connection", p.remote)
			}
			return fmt.Errorf("tcp path to %s: read: %w", p.remote, err)
		}
		n := binary.BigEndian.Uint32(prefix[:])
		if n < wire.RelayHeaderLen || n > maxFrame {
			return fmt.Errorf("tcp path to %s: frame length %d outside [%d, %d]; closing the path", p.remote, n, wire.RelayHeaderLen, maxFrame)
		}
		// A fresh slice per frame: the Bind queues it.
		frame := make([]byte, n)
		if _, err := io.ReadFull(r, frame); err != nil {
			return fmt.Errorf("tcp path to %s: read %d-byte frame: %w", p.remote, n, err)
		}
		f, err := wire.ParseRelay(frame)
		if err != nil {
			return fmt.Errorf("tcp path to %s: %w; closing the path", p.remote, err)
		}
		if f.Type != wire.RelayData {
			return fmt.Errorf("tcp path to %s: frame type %d, only data frames (%d) are carried; closing the path", p.remote, f.Type, wire.RelayData)
		}
		if f.Key != p.peer {
			return fmt.Errorf("tcp path to %s: frame names source %s, but the path authenticated %s; closing the path", p.remote, f.Key.Short(), p.peer.Short())
		}
		p.deliver(frame)
	}
}

// Close closes the connection; Run then returns nil. Closing a path that
// already ended is not an error.
func (p *Path) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	if err := p.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close tcp path to %s: %w", p.remote, err)
	}
	return nil
}
