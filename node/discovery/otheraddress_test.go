package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/portmap"
)

// sequentialPerDestination emulates a symmetric NAT with a sequential
// allocator (RFC 4787 §4.1, §4.2.1): the first packet to each server socket
// gets the next port from n, in the order the client contacts them.
func sequentialPerDestination(n netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort {
	var mu sync.Mutex
	ports := map[int]uint16{}
	return func(_ netip.AddrPort, sock int) netip.AddrPort {
		mu.Lock()
		defer mu.Unlock()
		p, ok := ports[sock]
		if !ok {
			p = n.Port() + uint16(len(ports))
			ports[sock] = p
		}
		return netip.AddrPortFrom(n.Addr(), p)
	}
}

// netcheckOn runs Netcheck against server alone, with a fake gateway and
// SSDP responder on loopback and 127.0.0.1 as the host's address.
func netcheckOn(t *testing.T, server netip.AddrPort) Report {
	t.Helper()
	gw := fakeGateway(t, netip.MustParseAddr("127.0.0.3"))
	opts := NetcheckOptions{
		Servers:    []string{server.String()},
		LocalAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("127.0.0.1")} },
		PortMap:    portmap.ProbeOptions{Gateway: gw.Addr(), ServerPort: gw.Port(), SSDP: fakeSSDP(t), Timeout: time.Second},
		Timing:     testTiming,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return Netcheck(ctx, opts)
}

// TestNetcheckAtTheAlternateAddress points netcheck at a server's alternate
// address (IP2:P2). Its OTHER-ADDRESS is then the primary, and the mapping
// test must query the other IP to see a symmetric NAT. A server that names
// its own IP there, as meshnode's did, must leave the behaviour unknown with
// a note, not report endpoint-independent mapping.
func TestNetcheckAtTheAlternateAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		server    stunBehaviour
		mapping   func(netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort
		want      wire.NATMapping
		filtering wire.NATFiltering
		alloc     wire.PortAllocation
		step      int
		note      string // a note that must appear; "": no notes
	}{
		{
			name: "symmetric NAT", server: stunBehaviour{filter: addressPortDependent}, mapping: sequentialPerDestination,
			want: wire.MappingAddressPortDependent, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocSequential, step: 1,
		},
		{
			name: "port-restricted cone", server: stunBehaviour{filter: addressPortDependent}, mapping: endpointIndependent,
			want: wire.MappingEndpointIndependent, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocUnknown,
		},
		{
			name: "symmetric NAT, server names its own IP in OTHER-ADDRESS", server: stunBehaviour{filter: addressPortDependent, fixedOther: true},
			mapping: sequentialPerDestination,
			want:    wire.MappingUnknown, filtering: wire.FilteringUnknown, alloc: wire.PortAllocUnknown,
			note: "on its own IP",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nat := natSocket(t, false)
			f := startFakeSTUN(t, tc.server, tc.mapping(nat))
			r := netcheckOn(t, f.addr(sockAlternate))
			if r.Mapping != tc.want || r.Filtering != tc.filtering || r.PortAllocation != tc.alloc || r.PortStep != tc.step {
				t.Errorf("mapping %q filtering %q allocation %q step %d; want %q %q %q %d",
					r.Mapping, r.Filtering, r.PortAllocation, r.PortStep, tc.want, tc.filtering, tc.alloc, tc.step)
			}
			if r.PublicAddress != nat.String() {
				t.Errorf("public address %q, want the NAT's %v", r.PublicAddress, nat)
			}
			if tc.note == "" && len(r.Notes) > 0 {
				t.Errorf("unexpected notes: %q", r.Notes)
			}
			if tc.note != "" && !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, tc.note) }) {
				t.Errorf("notes %q lack %q", r.Notes, tc.note)
			}
		})
	}
}

func TestCheckOther(t *testing.T) {
	server := netip.MustParseAddrPort("192.0.2.2:3479")
	for _, tc := range []struct {
		other string
		ok    bool
	}{
		{"192.0.2.1:3478", true},
		{"192.0.2.2:3478", false}, // its own IP
		{"192.0.2.2:3479", false}, // itself
		{"192.0.2.1:3479", false}, // its own port
		{"0.0.0.0:3478", false},
		{"192.0.2.1:0", false},
	} {
		err := checkOther(server, netip.MustParseAddrPort(tc.other))
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errBadOther) {
			t.Errorf("checkOther(%v, %v) = %v; want ok %v", server, tc.other, err, tc.ok)
		}
	}
}

// natTransport sends a Prober's requests from loopback sockets, emulating
// a NAT's mapping by its choice of socket: one per destination is
// address-and-port-dependent mapping (RFC 4787 §4.1), one for all is
// endpoint-independent. Answers go to the prober.
type natTransport struct {
	t              *testing.T
	prober         *Prober
	perDestination bool

	mu    sync.Mutex
	socks map[netip.AddrPort]*net.UDPConn
}

func newNATTransport(t *testing.T, perDestination bool) *natTransport {
	n := &natTransport{t: t, perDestination: perDestination, socks: map[netip.AddrPort]*net.UDPConn{}}
	n.prober = NewProber(n)
	return n
}

func (n *natTransport) WriteTo(pkt []byte, to netip.AddrPort) error {
	c, err := n.sock(to)
	if err != nil {
		return err
	}
	_, err = c.WriteToUDPAddrPort(pkt, to)
	return err
}

func (n *natTransport) sock(to netip.AddrPort) (*net.UDPConn, error) {
	if !n.perDestination {
		to = netip.AddrPort{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.socks[to]; ok {
		return c, nil
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	n.socks[to] = c
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed by cleanup
			}
			n.prober.HandleSTUN(buf[:k], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		}
	}()
	n.t.Cleanup(func() { c.Close(); <-done })
	return c, nil
}

// meshnodeSTUN runs the coordinator's STUN server on the four sockets of
// an RFC 5780 grid and returns their addresses, by grid index.
func meshnodeSTUN(t *testing.T) [4]netip.AddrPort {
	t.Helper()
	g := listenGrid(t)
	var addrs [4]netip.AddrPort
	for i, c := range g {
		addrs[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- stunserver.New(stunserver.Options{}).Serve(ctx, stunserver.Conns{Primary: g[0], AltPort: g[1], AltIP: g[2], Alternate: g[3]})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("STUN server: %v", err)
		}
		for _, c := range g {
			c.Close()
		}
	})
	return addrs
}

// TestClassifyMappingAgainstMeshnodeServer runs the client's RFC 5780
// mapping test against the coordinator's own STUN server, asked at its
// primary and at its alternate address, through an emulated symmetric NAT
// and an endpoint-independent one.
func TestClassifyMappingAgainstMeshnodeServer(t *testing.T) {
	server := meshnodeSTUN(t)
	for _, at := range []int{sockPrimary, sockAlternate} {
		for _, tc := range []struct {
			name           string
			perDestination bool
			want           wire.NATMapping
		}{
			{"symmetric NAT", true, wire.MappingAddressPortDependent},
			{"endpoint-independent NAT", false, wire.MappingEndpointIndependent},
		} {
			t.Run(server[at].String()+"/"+tc.name, func(t *testing.T) {
				tr := newNATTransport(t, tc.perDestination)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				m, err := tr.prober.ClassifyMapping(ctx, Target{Addr: server[at]}, 0, nil)
				if err != nil {
					t.Fatalf("mapping test: %v", err)
				}
				if m.Behaviour != tc.want {
					t.Fatalf("mapping %q (probes %v), want %q", m.Behaviour, m.Probes, tc.want)
				}
			})
		}
	}
}

// TestNetcheckAgainstMeshnodeServer runs netcheck against the coordinator's
// own STUN server at each of its two advertised addresses: on loopback
// there is no NAT, nothing filters, and every CHANGE-REQUEST answer must
// come from where RFC 5780 says, or netcheck would note it.
func TestNetcheckAgainstMeshnodeServer(t *testing.T) {
	server := meshnodeSTUN(t)
	for _, at := range []int{sockPrimary, sockAlternate} {
		t.Run(server[at].String(), func(t *testing.T) {
			r := netcheckOn(t, server[at])
			if r.Mapping != wire.MappingNone || r.Filtering != wire.FilteringNone || len(r.Notes) > 0 {
				t.Errorf("mapping %q filtering %q notes %q; want no NAT, no filtering, no notes", r.Mapping, r.Filtering, r.Notes)
			}
		})
	}
}
