package portmap

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// protoNATPMP names NAT-PMP in errors and results.
const protoNATPMP = "NAT-PMP"

// NAT-PMP message layout (RFC 6886 §3.2, §3.3): version 0; an answer's
// opcode is the request's plus 128.
const (
	natpmpVersion      = 0
	natpmpOpExternal   = 0
	natpmpOpMapUDP     = 1
	natpmpOpResponse   = 128
	natpmpExternalLen  = 12 // external address answer
	natpmpMapLen       = 12 // map request
	natpmpMapAnswerLen = 16 // map answer
)

// natpmpResultName names NAT-PMP result codes (RFC 6886 §3.5).
func natpmpResultName(code uint16) string {
	switch code {
	case 0:
		return "success"
	case 1:
		return "unsupported version"
	case 2:
		return "not authorized or refused: port mapping is turned off on the gateway"
	case 3:
		return "network failure: the gateway has no external address yet"
	case 4:
		return "out of resources"
	case 5:
		return "unsupported opcode"
	}
	return "unknown result code"
}

// ExternalAddress asks the NAT-PMP server for the gateway's external IPv4
// address (RFC 6886 §3.2). The answer may be 0.0.0.0 while the gateway has
// no external address.
func ExternalAddress(ctx context.Context, server netip.AddrPort) (netip.Addr, error) {
	return externalAddress(ctx, server, retransmitInitial)
}

// externalAddress is ExternalAddress retransmitting first after rto.
func externalAddress(ctx context.Context, server netip.AddrPort, rto time.Duration) (netip.Addr, error) {
	c, err := dial(server)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("NAT-PMP: %w", err)
	}
	defer c.Close()
	req := []byte{natpmpVersion, natpmpOpExternal}
	var ext netip.Addr
	err = exchange(ctx, c, rto, func() error { _, err := c.Write(req); return err }, func(b []byte, _ netip.AddrPort) error {
		var err error
		ext, err = parseNATPMPExternal(b)
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("NAT-PMP external address from %s: %w", server, err)
	}
	return ext, nil
}

// parseNATPMPExternal reads an external address answer: version, opcode
// 128, result code, seconds since the gateway's epoch, IPv4 address.
func parseNATPMPExternal(b []byte) (netip.Addr, error) {
	if err := natpmpHeader(b, natpmpOpExternal); err != nil {
		return netip.Addr{}, err
	}
	if len(b) < natpmpExternalLen {
		return netip.Addr{}, errNotResponse
	}
	return netip.AddrFrom4([4]byte(b[8:12])), nil
}

// natpmpHeader checks an answer's version, opcode and result code.
func natpmpHeader(b []byte, op byte) error {
	if len(b) < 4 {
		return errNotResponse
	}
	if b[0] != natpmpVersion {
		return fmt.Errorf("answer has version %d, NAT-PMP is %d: %w", b[0], natpmpVersion, errOtherVersion)
	}
	if b[1] != natpmpOpResponse+op {
		return errNotResponse
	}
	if code := binary.BigEndian.Uint16(b[2:4]); code != 0 {
		return &ResultError{Protocol: protoNATPMP, Code: code}
	}
	return nil
}

// natpmpMapRequest builds a UDP mapping request (RFC 6886 §3.3). Lifetime 0
// with suggested port 0 deletes the mapping (§3.4).
func natpmpMapRequest(internal, suggested uint16, lifetime uint32) []byte {
	b := make([]byte, natpmpMapLen)
	b[0], b[1] = natpmpVersion, natpmpOpMapUDP
	binary.BigEndian.PutUint16(b[4:], internal)
	binary.BigEndian.PutUint16(b[6:], suggested)
	binary.BigEndian.PutUint32(b[8:], lifetime)
	return b
}

// parseNATPMPMap reads a mapping answer for internal: the external port
// the gateway chose and the lifetime it granted, in seconds.
func parseNATPMPMap(b []byte, internal uint16) (external uint16, lifetime uint32, err error) {
	if err := natpmpHeader(b, natpmpOpMapUDP); err != nil {
		return 0, 0, err
	}
	if len(b) < natpmpMapAnswerLen || binary.BigEndian.Uint16(b[8:10]) != internal {
		return 0, 0, errNotResponse
	}
	return binary.BigEndian.Uint16(b[10:12]), binary.BigEndian.Uint32(b[12:16]), nil
}

// natpmpMap sends a mapping request and returns the gateway's answer.
func natpmpMap(ctx context.Context, server netip.AddrPort, internal, suggested uint16, lifetime uint32) (uint16, uint32, error) {
	c, err := dial(server)
	if err != nil {
		return 0, 0, fmt.Errorf("NAT-PMP: %w", err)
	}
	defer c.Close()
	req := natpmpMapRequest(internal, suggested, lifetime)
	var ext uint16
	var granted uint32
	err = exchange(ctx, c, retransmitInitial, func() error { _, err := c.Write(req); return err }, func(b []byte, _ netip.AddrPort) error {
		var err error
		ext, granted, err = parseNATPMPMap(b, internal)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("NAT-PMP map UDP port %d at %s: %w", internal, server, err)
	}
	return ext, granted, nil
}
