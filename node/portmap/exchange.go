// Package portmap talks to the LAN gateway's port-mapping services: NAT-PMP
// (RFC 6886), PCP (RFC 6887) and UPnP IGD discovery (SSDP). It finds the
// default gateway, probes which services answer, and keeps a NAT-PMP or PCP
// mapping for the node's WireGuard port so peers get a "portmap" candidate
// that works even behind a NAT whose mapping depends on the destination.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/internal/underlay"
)

// ServerPort is where NAT-PMP and PCP servers listen on the gateway
// (RFC 6886 §3.1, RFC 6887 §19.1).
const ServerPort = 5351

// Retransmission (RFC 6886 §3.1): the first retry after 250 ms, the interval
// doubling each time, at most 9 sends. PCP's own initial interval is 3 s
// (RFC 6887 §8.1.1), tuned for servers under load; the LAN gateway answers
// in milliseconds, so PCP uses NAT-PMP's quicker schedule here too. Callers
// bound the whole exchange with their context, usually well before the ninth
// send.
const (
	retransmitInitial = 250 * time.Millisecond
	maxSends          = 9
)

// maxResponse bounds a read: PCP messages are at most 1100 bytes
// (RFC 6887 §7), SSDP answers fit one Ethernet frame.
const maxResponse = 1500

// ErrNoAnswer means the server never answered: nothing listens there, or a
// firewall drops the request or the answer.
var ErrNoAnswer = errors.New("no answer")

// errNotResponse marks a datagram that is not an answer to our request (a
// stray packet, a malformed one, another opcode); exchange keeps waiting.
var errNotResponse = errors.New("not a response to this request")

// exchange sends req with send, retransmitting on RFC 6886's schedule from
// a first interval of rto (retransmitInitial; tests scale it down), and
// hands each datagram read from c to accept until accept returns nil (done)
// or an error other than errNotResponse (a final answer, such as a
// refusal). It stops with ErrNoAnswer when the sends run out or ctx's
// deadline passes.
func exchange(ctx context.Context, c *net.UDPConn, rto time.Duration, send func() error, accept func(pkt []byte, from netip.AddrPort) error) error {
	// A cancelled context without a deadline unblocks the read too.
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) }) //nolint:errcheck // best effort: unblocks Read
	defer stop()
	start := time.Now()
	buf := make([]byte, maxResponse)
	for range maxSends {
		if err := send(); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		deadline, last := time.Now().Add(rto), false
		if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
			// The read deadline is ctx's: its timeout is the end, even if
			// it fires a moment before ctx's own timer.
			deadline, last = d, true
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		// Checked after setting the deadline: if ctx ended before, the
		// AfterFunc's deadline was just overwritten.
		if err := ctx.Err(); err != nil {
			return noAnswer(ctx, start)
		}
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				// ICMP port unreachable on a connected socket: a
				// definite "nothing listens here".
				return fmt.Errorf("%w: port closed", ErrNoAnswer)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if last || ctx.Err() != nil {
					return noAnswer(ctx, start)
				}
				break // retransmit
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			err = accept(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
			if !errors.Is(err, errNotResponse) {
				return err
			}
		}
		rto *= 2
	}
	return fmt.Errorf("%w after %d sends over %v", ErrNoAnswer, maxSends, time.Since(start).Round(time.Millisecond))
}

// noAnswer is the error when ctx ends the wait: cancellation as such, a
// deadline as ErrNoAnswer.
func noAnswer(ctx context.Context, start time.Time) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return fmt.Errorf("%w within %v", ErrNoAnswer, time.Since(start).Round(time.Millisecond))
}

// dial opens a UDP socket connected to server, so the kernel drops
// datagrams from anyone else (RFC 6886 §3.1 and RFC 6887 §8.3 ask clients to
// accept answers from the server's address only).
func dial(server netip.AddrPort) (*net.UDPConn, error) {
	c, err := underlay.DialUDP("udp4", net.UDPAddrFromAddrPort(server))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", server, err)
	}
	return c, nil
}

// ResultError is a NAT-PMP or PCP answer with a non-zero result code: the
// server is there but refused the request.
type ResultError struct {
	Protocol string // "NAT-PMP" or "PCP"
	Code     uint16
}

func (e *ResultError) Error() string {
	name := natpmpResultName(e.Code)
	if e.Protocol == protoPCP {
		name = pcpResultName(e.Code)
	}
	return fmt.Sprintf("%s result %d (%s)", e.Protocol, e.Code, name)
}

// errOtherVersion means the server answered in another protocol version: a
// PCP-only server answering NAT-PMP, or the reverse (RFC 6887 §9).
var errOtherVersion = errors.New("the server speaks another protocol version")

// unsupportedVersion reports whether err says the server doesn't speak the
// version we sent: answered in another version, or with result 1 (both
// NAT-PMP's "Unsupported Version" and PCP's UNSUPP_VERSION).
func unsupportedVersion(err error) bool {
	var re *ResultError
	return errors.Is(err, errOtherVersion) || errors.As(err, &re) && re.Code == 1
}

// localAddr is the source address the kernel chose for a connected socket:
// the address the gateway sees, which PCP puts in its header.
func localAddr(c *net.UDPConn) netip.Addr {
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
