package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Discovery messages travel sealed (crypto.Sealer) after DiscoMagic:
//
//	DiscoMagic (4) | sealed(type (1) | body)
//
// The magic is bound as additional data, so it can't be swapped.
//
// A ping or pong may carry zero bytes after its body (Disco.Pad): a path
// MTU probe is a ping padded to the size under test, answered by a pong
// padded as much. Parsers ignore what follows the body, so nodes that
// don't probe answer probes too.

// DiscoType is a discovery message type.
type DiscoType byte

// Discovery message types.
const (
	// DiscoPing asks the receiver to answer with a pong on the same path.
	DiscoPing DiscoType = 1
	// DiscoPong answers a ping and tells the pinger the source it came from.
	DiscoPong DiscoType = 2
	// DiscoCallMeMaybe lists the sender's candidates and asks the receiver
	// to ping them now (sent over the relay or any working path).
	DiscoCallMeMaybe DiscoType = 3
	// DiscoReady says the sender's NAT is open towards the receiver's
	// candidates (it primed them with low-TTL pings), so the receiver's
	// pings can't arrive early there; sent over the relay. It has no body.
	DiscoReady DiscoType = 4
	// DiscoOffline tells the receiver that the sender's coordinator shows
	// it offline while the sender still has a direct path to it: the
	// receiver's coordinator may have died without its streams closing (a
	// lost host, a hung process), so the receiver checks its stream at
	// once (StreamCheckTimeout) instead of at its next ping. It has no
	// body. Nodes before it drop it as malformed.
	DiscoOffline DiscoType = 5
)

// TxIDLen is the length of a ping's transaction ID.
const TxIDLen = 12

// Plaintext lengths of an unpadded ping and pong: type, transaction ID,
// and the pong's source address.
const (
	DiscoPingLen = 1 + TxIDLen
	DiscoPongLen = 1 + TxIDLen + addrPortLen
)

// addrPortLen is an address as 16 bytes (IPv4 mapped) plus a port.
const addrPortLen = 18

// maxCallMeMaybe bounds the candidates one message lists.
const maxCallMeMaybe = 32

// Disco is a decoded discovery message.
type Disco struct {
	Type DiscoType
	TxID [TxIDLen]byte    // ping, pong
	Src  netip.AddrPort   // pong: where the ping came from
	Addr []netip.AddrPort // call-me-maybe: the sender's candidates
	// Pad is how many zero bytes Marshal appends to a ping or pong. It is
	// not parsed back (trailing bytes are ignored).
	Pad int
}

// Marshal encodes the message's plaintext.
func (d Disco) Marshal() []byte {
	b := []byte{byte(d.Type)}
	switch d.Type {
	case DiscoPing:
		b = append(b, d.TxID[:]...)
		b = append(b, make([]byte, d.Pad)...)
	case DiscoPong:
		b = append(b, d.TxID[:]...)
		b = appendAddrPort(b, d.Src)
		b = append(b, make([]byte, d.Pad)...)
	case DiscoCallMeMaybe:
		for i, a := range d.Addr {
			if i == maxCallMeMaybe {
				break
			}
			b = appendAddrPort(b, a)
		}
	}
	return b
}

// ErrDisco reports a malformed discovery plaintext.
var ErrDisco = errors.New("malformed discovery message")

// ParseDisco decodes a plaintext made by Marshal.
func ParseDisco(b []byte) (Disco, error) {
	var d Disco
	if len(b) < 1 {
		return d, ErrDisco
	}
	d.Type, b = DiscoType(b[0]), b[1:]
	switch d.Type {
	case DiscoPing:
		if len(b) < TxIDLen {
			return d, fmt.Errorf("%w: ping of %d bytes", ErrDisco, len(b))
		}
		copy(d.TxID[:], b)
	case DiscoPong:
		if len(b) < TxIDLen+addrPortLen {
			return d, fmt.Errorf("%w: pong of %d bytes", ErrDisco, len(b))
		}
		copy(d.TxID[:], b)
		d.Src = readAddrPort(b[TxIDLen:])
	case DiscoCallMeMaybe:
		if len(b)%addrPortLen != 0 || len(b)/addrPortLen > maxCallMeMaybe {
			return d, fmt.Errorf("%w: call-me-maybe of %d bytes", ErrDisco, len(b))
		}
		for ; len(b) > 0; b = b[addrPortLen:] {
			d.Addr = append(d.Addr, readAddrPort(b))
		}
	case DiscoReady, DiscoOffline:
		if len(b) != 0 {
			return d, fmt.Errorf("%w: type %d with %d bytes of body", ErrDisco, d.Type, len(b))
		}
	default:
		return d, fmt.Errorf("%w: type %d", ErrDisco, d.Type)
	}
	return d, nil
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As16()
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readAddrPort(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18]))
}
