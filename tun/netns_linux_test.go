package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wait"

	"github.com/vishvananda/netlink"
)

const (
	// waitTimeout bounds every convergence wait; the kernel answers in
	// microseconds, so reaching it means the behaviour is broken.
	waitTimeout = 10 * time.Second
	// pollInterval is how often a wait re-checks, or re-sends a probe.
	pollInterval = 50 * time.Millisecond
	// readOffset is where packets start in Read/Write buffers, as in
	// wireguard-go's device (MessageTransportOffsetContent); the Linux kernel
	// driver needs room for its 10-byte virtio-net header before the packet.
	readOffset = 16
	// maxPackets bounds how many packets a test reader takes from a device.
	maxPackets = 10000
)

// eventually polls cond until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	wait.ForNil(t, waitTimeout, what, cond)
}

// readPackets copies packets read from dev into the returned channel until
// dev is closed, the test ends, or maxPackets have been read.
func readPackets(t *testing.T, dev Device) <-chan []byte {
	mtu, err := dev.MTU()
	if err != nil {
		t.Fatalf("MTU: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	out := make(chan []byte, 16)
	go func() {
		defer close(out)
		bufs := make([][]byte, dev.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, readOffset+mtu)
		}
		sizes := make([]int, len(bufs))
		for read := 0; read < maxPackets; {
			n, err := dev.Read(bufs, sizes, readOffset)
			if err != nil {
				return
			}
			for i := range n {
				read++
				select {
				case out <- append([]byte(nil), bufs[i][readOffset:readOffset+sizes[i]]...):
				case <-done:
					return
				}
			}
		}
	}()
	return out
}

// awaitPacket calls send every pollInterval until a packet for which match
// returns true arrives from packets, and returns it.
func awaitPacket(t *testing.T, packets <-chan []byte, what string, send func() error, match func(ipPacket) bool) ipPacket {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if err := send(); err != nil {
			t.Fatalf("%s: send: %v", what, err)
		}
	drain:
		for {
			select {
			case raw, ok := <-packets:
				if !ok {
					t.Fatalf("%s: device stopped delivering packets", what)
				}
				if p, err := parseIP(raw); err == nil && match(p) {
					return p
				}
			case <-tick.C:
				break drain
			case <-timeout.C:
				t.Fatalf("%s: no matching packet within %v", what, waitTimeout)
			}
		}
	}
}

// ipPacket is the part of an IPv4 or IPv6 packet the tests look at.
type ipPacket struct {
	src, dst netip.Addr
	proto    uint8
	payload  []byte // after the IP header (no IPv6 extension headers)
}

func parseIP(b []byte) (ipPacket, error) {
	if len(b) < 1 {
		return ipPacket{}, errors.New("empty packet")
	}
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return ipPacket{}, fmt.Errorf("short IPv4 packet (%d bytes)", len(b))
		}
		return ipPacket{
			src:     netip.AddrFrom4([4]byte(b[12:16])),
			dst:     netip.AddrFrom4([4]byte(b[16:20])),
			proto:   b[9],
			payload: b[ihl:],
		}, nil
	case 6:
		if len(b) < 40 {
			return ipPacket{}, fmt.Errorf("short IPv6 packet (%d bytes)", len(b))
		}
		return ipPacket{
			src:     netip.AddrFrom16([16]byte(b[8:24])),
			dst:     netip.AddrFrom16([16]byte(b[24:40])),
			proto:   b[6],
			payload: b[40:],
		}, nil
	}
	return ipPacket{}, fmt.Errorf("IP version %d", b[0]>>4)
}

// icmpEcho builds an IPv4 ICMP echo request (RFC 792) from src to dst,
// preceded by readOffset bytes of headroom for Device.Write.
func icmpEcho(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	const ipHeaderLen, icmpHeaderLen = 20, 8
	buf := make([]byte, readOffset+ipHeaderLen+icmpHeaderLen+len(data))
	ip := buf[readOffset:]
	ip[0] = 0x45 // version 4, 5-word header
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64 // TTL
	ip[9] = 1  // ICMP
	copy(ip[12:16], src.AsSlice())
	copy(ip[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ipHeaderLen]))
	icmp := ip[ipHeaderLen:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	copy(icmp[icmpHeaderLen:], data)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return buf
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// dumpRetries bounds retries of a netlink dump that a concurrent change (for
// example the kernel adding a link-local route) interrupted.
const dumpRetries = 5

func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		list []T
		err  error
	)
	for range dumpRetries {
		if list, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return list, err
}

// linkAddrs lists the addresses on the device name.
func linkAddrs(name string) (map[netip.Prefix]netlink.Addr, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix]netlink.Addr, len(addrs))
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		out[netip.PrefixFrom(ip.Unmap(), bits)] = a
	}
	return out, nil
}

// linkRoutes lists the destinations routed via the device name.
func linkRoutes(name string) (map[netip.Prefix]bool, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix]bool, len(routes))
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		out[netip.PrefixFrom(ip.Unmap(), bits)] = true
	}
	return out, nil
}
