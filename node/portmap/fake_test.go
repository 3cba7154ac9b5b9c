package portmap

import (
	"bytes"
	"encoding/binary"
	"github.com/meshnode/meshnode/internal/wait"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer is a UDP server on 127.0.0.1 that records every request and
// answers with handle's reply (nil: stay silent).
type fakeServer struct {
	conn   *net.UDPConn
	handle func(req []byte) []byte

	mu   sync.Mutex
	reqs [][]byte
}

func newFakeServer(t *testing.T, handle func(req []byte) []byte) *fakeServer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeServer{conn: c, handle: handle}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed by cleanup
			}
			req := slices.Clone(buf[:n])
			f.mu.Lock()
			f.reqs = append(f.reqs, req)
			f.mu.Unlock()
			if resp := handle(req); resp != nil {
				c.WriteToUDPAddrPort(resp, from) //nolint:errcheck // the client's timeout covers a lost answer
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return f
}

func (f *fakeServer) addr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeServer) requests() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// waitFor polls cond for up to waitDeadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, waitDeadline, what, cond)
}

// waitDeadline bounds the fake servers' waits.
const waitDeadline = 10 * time.Second

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

// testExternal is the fake gateway's external address, in the lab's
// "internet" (198.18.0.0/15); it only ever appears inside packets.
var testExternal = netip.MustParseAddr("198.18.0.7")

// natpmpGateway emulates a NAT-PMP server (RFC 6886): external address and
// UDP mapping requests, answered with result code; mapped ports come from
// portFor and lifetimes are granted as asked, capped at maxLife.
type natpmpGateway struct {
	result  uint16
	portFor func(internal, suggested uint16) uint16
	maxLife uint32
}

func (g natpmpGateway) handle(req []byte) []byte {
	if len(req) < 2 {
		return nil
	}
	if req[0] != 0 {
		// RFC 6886 §3.5: "Unsupported Version" to other versions.
		return []byte{0, 128 + req[1], 0, 1, 0, 0, 0, 1}
	}
	switch req[1] {
	case natpmpOpExternal:
		b := binary.BigEndian.AppendUint16([]byte{0, 128}, g.result)
		b = binary.BigEndian.AppendUint32(b, 42) // seconds since epoch
		return append(b, testExternal.AsSlice()...)
	case natpmpOpMapUDP:
		internal := binary.BigEndian.Uint16(req[4:])
		suggested := binary.BigEndian.Uint16(req[6:])
		life := min(binary.BigEndian.Uint32(req[8:]), g.maxLife)
		port := uint16(0)
		if life > 0 {
			port = suggested
			if g.portFor != nil {
				port = g.portFor(internal, suggested)
			}
		}
		b := binary.BigEndian.AppendUint16([]byte{0, 129}, g.result)
		b = binary.BigEndian.AppendUint32(b, 42)
		b = binary.BigEndian.AppendUint16(b, internal)
		b = binary.BigEndian.AppendUint16(b, port)
		return binary.BigEndian.AppendUint32(b, life)
	}
	return nil
}

// pcpGateway emulates a PCP-only server (RFC 6887): ANNOUNCE and MAP,
// "Unsupported Version" in NAT-PMP's format to version 0 requests.
type pcpGateway struct {
	result  byte
	port    uint16 // assigned external port; 0: the suggested one
	maxLife uint32
}

func (g pcpGateway) handle(req []byte) []byte {
	if len(req) >= 2 && req[0] == 0 {
		return []byte{0, 128 + req[1], 0, 1, 0, 0, 0, 1}
	}
	if len(req) < pcpHeaderLen || req[0] != pcpVersion {
		return nil
	}
	resp := make([]byte, len(req))
	resp[0], resp[1], resp[3] = pcpVersion, pcpResponse|req[1], g.result
	binary.BigEndian.PutUint32(resp[4:], min(binary.BigEndian.Uint32(req[4:8]), g.maxLife))
	binary.BigEndian.PutUint32(resp[8:], 42) // epoch
	if req[1] == pcpOpMap && len(req) >= pcpMapLen {
		copy(resp[24:], req[24:]) // nonce, protocol, internal port
		port := binary.BigEndian.Uint16(req[42:])
		if g.port != 0 {
			port = g.port
		}
		binary.BigEndian.PutUint16(resp[42:], port)
		ext := testExternal.As16()
		copy(resp[44:], ext[:])
	}
	return resp
}

func hexEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got % x\nwant % x", what, got, want)
	}
}

// atomicPort is a port the fake gateway's handler reads while the test
// changes it.
type atomicPort struct{ v atomic.Uint32 }

func (p *atomicPort) Store(port uint16) { p.v.Store(uint32(port)) }
func (p *atomicPort) Load() uint16      { return uint16(p.v.Load()) }
