package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// protoPCP names PCP in errors and results.
const protoPCP = "PCP"

// PCP message layout (RFC 6887 §7, §11.1).
const (
	pcpVersion    = 2
	pcpOpAnnounce = 0
	pcpOpMap      = 1
	pcpResponse   = 0x80 // the R bit: set in answers
	pcpHeaderLen  = 24
	pcpMapLen     = pcpHeaderLen + 36 // header + MAP opcode data
	pcpMaxLen     = 1100              // §7: no PCP message is longer
	pcpNonceLen   = 12
	protoUDP      = 17 // IANA protocol number, in the MAP opcode
)

// pcpResultName names PCP result codes (RFC 6887 §7.4).
func pcpResultName(code uint16) string {
	switch code {
	case 0:
		return "SUCCESS"
	case 1:
		return "UNSUPP_VERSION"
	case 2:
		return "NOT_AUTHORIZED: port mapping is turned off on the gateway"
	case 3:
		return "MALFORMED_REQUEST"
	case 4:
		return "UNSUPP_OPCODE"
	case 5:
		return "UNSUPP_OPTION"
	case 6:
		return "MALFORMED_OPTION"
	case 7:
		return "NETWORK_FAILURE: the gateway has no external address yet"
	case 8:
		return "NO_RESOURCES"
	case 9:
		return "UNSUPP_PROTOCOL"
	case 10:
		return "USER_EX_QUOTA: too many mappings for this host"
	case 11:
		return "CANNOT_PROVIDE_EXTERNAL"
	case 12:
		return "ADDRESS_MISMATCH: the gateway sees another source address (a second NAT in between?)"
	case 13:
		return "EXCESSIVE_REMOTE_PEERS"
	}
	return "unknown result code"
}

// pcpRequest builds the common request header (RFC 6887 §7.1): version,
// opcode with the R bit clear, requested lifetime and the client's own
// address, IPv4 as IPv4-mapped IPv6, which the server compares with the
// packet's source to detect a NAT between them.
func pcpRequest(op byte, lifetime uint32, client netip.Addr, size int) []byte {
	b := make([]byte, size)
	b[0], b[1] = pcpVersion, op
	binary.BigEndian.PutUint32(b[4:], lifetime)
	c := client.As16()
	copy(b[8:24], c[:])
	return b
}

// parsePCPHeader validates a response header (RFC 6887 §7.2) as §8.3 asks:
// length, version, R bit and opcode; then the result code. It returns the
// lifetime granted, in seconds.
func parsePCPHeader(b []byte, op byte) (uint32, error) {
	if len(b) >= 1 && b[0] != pcpVersion {
		return 0, fmt.Errorf("answer has version %d, PCP is %d: %w", b[0], pcpVersion, errOtherVersion)
	}
	if len(b) < pcpHeaderLen || len(b) > pcpMaxLen || len(b)%4 != 0 || b[1] != pcpResponse|op {
		return 0, errNotResponse
	}
	if b[3] != 0 {
		return 0, &ResultError{Protocol: protoPCP, Code: uint16(b[3])}
	}
	return binary.BigEndian.Uint32(b[4:8]), nil
}

// Announce sends PCP's ANNOUNCE (RFC 6887 §14.1), which a PCP server
// answers with SUCCESS: the cheapest "is PCP here?".
func Announce(ctx context.Context, server netip.AddrPort) error {
	return announce(ctx, server, retransmitInitial)
}

// announce is Announce retransmitting first after rto.
func announce(ctx context.Context, server netip.AddrPort, rto time.Duration) error {
	c, err := dial(server)
	if err != nil {
		return fmt.Errorf("PCP: %w", err)
	}
	defer c.Close()
	req := pcpRequest(pcpOpAnnounce, 0, localAddr(c), pcpHeaderLen)
	err = exchange(ctx, c, rto, func() error { _, err := c.Write(req); return err }, func(b []byte, _ netip.AddrPort) error {
		_, err := parsePCPHeader(b, pcpOpAnnounce)
		return err
	})
	if err != nil {
		return fmt.Errorf("PCP announce to %s: %w", server, err)
	}
	return nil
}

// pcpMapping is one MAP request's identity: the nonce ties renewals and the
// deletion to the mapping (RFC 6887 §11.2).
type pcpMapping struct {
	nonce    [pcpNonceLen]byte
	internal uint16
}

func newPCPMapping(internal uint16) (pcpMapping, error) {
	m := pcpMapping{internal: internal}
	if _, err := rand.Read(m.nonce[:]); err != nil {
		return m, fmt.Errorf("PCP nonce: %w", err)
	}
	return m, nil
}

// pcpMapRequest builds a MAP request for UDP (RFC 6887 §11.1). Lifetime 0
// deletes the mapping (§15).
func pcpMapRequest(m pcpMapping, client netip.Addr, suggested netip.AddrPort, lifetime uint32) []byte {
	b := pcpRequest(pcpOpMap, lifetime, client, pcpMapLen)
	copy(b[24:36], m.nonce[:])
	b[36] = protoUDP
	binary.BigEndian.PutUint16(b[40:], m.internal)
	binary.BigEndian.PutUint16(b[42:], suggested.Port())
	// No preference is the family's all-zeros address, for IPv4 ::ffff:0.0.0.0.
	ip := netip.IPv4Unspecified()
	if suggested.Addr().IsValid() {
		ip = suggested.Addr()
	}
	s := ip.As16()
	copy(b[44:60], s[:])
	return b
}

// parsePCPMap reads a MAP answer: the external address and port assigned
// and the lifetime granted, in seconds.
func parsePCPMap(b []byte, m pcpMapping) (netip.AddrPort, uint32, error) {
	lifetime, err := parsePCPHeader(b, pcpOpMap)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if len(b) < pcpMapLen || [pcpNonceLen]byte(b[24:36]) != m.nonce || b[36] != protoUDP || binary.BigEndian.Uint16(b[40:42]) != m.internal {
		return netip.AddrPort{}, 0, errNotResponse
	}
	ip := netip.AddrFrom16([16]byte(b[44:60])).Unmap()
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[42:44])), lifetime, nil
}

// pcpMap sends a MAP request and returns the gateway's answer.
func pcpMap(ctx context.Context, server netip.AddrPort, m pcpMapping, suggested netip.AddrPort, lifetime uint32) (netip.AddrPort, uint32, error) {
	c, err := dial(server)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("PCP: %w", err)
	}
	defer c.Close()
	req := pcpMapRequest(m, localAddr(c), suggested, lifetime)
	var ext netip.AddrPort
	var granted uint32
	err = exchange(ctx, c, retransmitInitial, func() error { _, err := c.Write(req); return err }, func(b []byte, _ netip.AddrPort) error {
		var err error
		ext, granted, err = parsePCPMap(b, m)
		return err
	})
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("PCP map UDP port %d at %s: %w", m.internal, server, err)
	}
	return ext, granted, nil
}
