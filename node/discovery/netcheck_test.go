package discovery

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/portmap"
)

// The fake RFC 5780 server's 2×2 grid of sockets: bit 1 is the IP
// (127.0.0.1 or 127.0.0.2), bit 0 the port (P1 or P2).
const (
	sockPrimary   = 0 // IP1:P1
	sockAltPort   = 1 // IP1:P2
	sockAltIP     = 2 // IP2:P1
	sockAlternate = 3 // IP2:P2
)

// fakeSTUN is an RFC 5780 STUN server on loopback. It also emulates the
// NAT in front of the client: mapped says which address each socket sees,
// and the behaviour's filter which answers reach the client.
type fakeSTUN struct {
	stunBehaviour
	socks  [4]*net.UDPConn
	mapped func(src netip.AddrPort, sock int) netip.AddrPort // nil: no NAT

	mu        sync.Mutex
	contacted map[int]bool // sockets the client has sent to: a NAT's filter state
}

// stunBehaviour is how the fake server and the NAT before it behave.
type stunBehaviour struct {
	filter  func(from int, contacted map[int]bool) bool // nil: all pass
	ignore  bool                                        // answer CHANGE-REQUEST from the socket asked
	noOther bool                                        // leave out OTHER-ADDRESS
	// fixedOther always names IP2:P2 in OTHER-ADDRESS, as meshnode's server
	// did, instead of the other IP and port than the socket asked (RFC
	// 5780 §6.1 Table 1).
	fixedOther bool
}

// listenGrid binds P1 and P2 on both loopback IPs, retrying when a port
// is taken on the second IP.
func listenGrid(t *testing.T) [4]*net.UDPConn {
	t.Helper()
	ip1, ip2 := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)
	var g [4]*net.UDPConn
	for i := 0; i < 4; i += 2 { // sockets 0/2 share P1, 1/3 share P2
		for try := 0; ; try++ {
			a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip1})
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip2, Port: a.LocalAddr().(*net.UDPAddr).Port})
			if err == nil {
				g[i/2], g[i/2+2] = a, b
				break
			}
			a.Close()
			if try == 20 {
				testenv.Unavailable(t, "cannot bind the same port on 127.0.0.1 and 127.0.0.2: %v", err)
			}
		}
	}
	return g
}

func newFakeSTUN(t *testing.T, b stunBehaviour, mapped func(netip.AddrPort, int) netip.AddrPort) netip.AddrPort {
	t.Helper()
	return startFakeSTUN(t, b, mapped).addr(sockPrimary)
}

// startFakeSTUN starts a fake server; its sockets are at f.addr(sock).
func startFakeSTUN(t *testing.T, b stunBehaviour, mapped func(netip.AddrPort, int) netip.AddrPort) *fakeSTUN {
	t.Helper()
	f := &fakeSTUN{stunBehaviour: b, mapped: mapped}
	f.socks = listenGrid(t)
	f.contacted = map[int]bool{}
	var wg sync.WaitGroup
	for i, c := range f.socks {
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return // closed by cleanup
				}
				f.answer(buf[:n], from, i)
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range f.socks {
			c.Close()
		}
		wg.Wait()
	})
	return f
}

func (f *fakeSTUN) addr(i int) netip.AddrPort {
	return f.socks[i].LocalAddr().(*net.UDPAddr).AddrPort()
}

func (f *fakeSTUN) answer(pkt []byte, from netip.AddrPort, recv int) {
	req := &stun.Message{Raw: slices.Clone(pkt)}
	if req.Decode() != nil || req.Type != stun.BindingRequest {
		return
	}
	f.mu.Lock()
	f.contacted[recv] = true
	contacted := maps.Clone(f.contacted)
	f.mu.Unlock()
	reply := recv
	if v, err := req.Get(stun.AttrChangeRequest); err == nil && len(v) == 4 && !f.ignore {
		flags := binary.BigEndian.Uint32(v)
		if flags&ChangeIP != 0 {
			reply ^= 2
		}
		if flags&ChangePort != 0 {
			reply ^= 1
		}
	}
	if f.filter != nil && !f.filter(reply, contacted) {
		return // the emulated NAT drops it
	}
	seen := from
	if f.mapped != nil {
		seen = f.mapped(from, recv)
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: seen.Addr().AsSlice(), Port: int(seen.Port())},
	}
	if !f.noOther {
		o := f.addr(recv ^ sockAlternate)
		if f.fixedOther {
			o = f.addr(sockAlternate)
		}
		setters = append(setters, &stun.OtherAddress{IP: o.Addr().AsSlice(), Port: int(o.Port())})
	}
	resp, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		panic(err)
	}
	f.socks[reply].WriteToUDPAddrPort(resp.Raw, from) //nolint:errcheck // the client's timeout covers a lost answer
}

// Emulated NAT filters (RFC 4787 §5).
func addressDependent(from int, contacted map[int]bool) bool {
	return contacted[from] || contacted[from^1] // same IP, either port
}

func addressPortDependent(from int, contacted map[int]bool) bool { return contacted[from] }

// natSocket is the emulated NAT's public side on 127.0.0.3: mappings point
// at it, so the hairpin test's packets land on a socket the test owns.
// With echo it returns every packet to its sender, as a hairpinning NAT
// loops our own packet back to us.
func natSocket(t *testing.T, echo bool) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		testenv.Unavailable(t, "cannot bind 127.0.0.3: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if echo {
				c.WriteToUDPAddrPort(buf[:n], from) //nolint:errcheck // a lost echo reads as no hairpin
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// fakeGateway answers NAT-PMP's external address request with ext and
// PCP with NAT-PMP's "Unsupported Version", like a NAT-PMP-only router;
// fakeSSDP answers M-SEARCH with 200 OK.
func fakeGateway(t *testing.T, ext netip.Addr) netip.AddrPort {
	return udpServer(t, func(req []byte) []byte {
		if len(req) == 2 && req[0] == 0 && req[1] == 0 {
			return append([]byte{0, 128, 0, 0, 0, 0, 0, 1}, ext.AsSlice()...)
		}
		return []byte{0, 128 + req[1], 0, 1, 0, 0, 0, 1}
	})
}

func fakeSSDP(t *testing.T) netip.AddrPort {
	return udpServer(t, func([]byte) []byte {
		return []byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n")
	})
}

func udpServer(t *testing.T, handle func([]byte) []byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n >= 2 {
				c.WriteToUDPAddrPort(handle(buf[:n]), from) //nolint:errcheck // the prober's timeout covers a loss
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// closedUDP is a loopback address where nothing listens: a silent server.
func closedUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Emulated NAT mappings onto the NAT socket's address n (RFC 4787 §4.1).
func endpointIndependent(n netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort {
	return func(netip.AddrPort, int) netip.AddrPort { return n }
}

func portsPerServer(n netip.AddrPort, delta map[int]int) func(netip.AddrPort, int) netip.AddrPort {
	return func(_ netip.AddrPort, sock int) netip.AddrPort {
		return netip.AddrPortFrom(n.Addr(), uint16(int(n.Port())+delta[sock]))
	}
}

// testTiming shortens the silences netcheck waits out. The servers here
// are on loopback and answer in microseconds, so a quarter second still
// tells an answer from silence on a loaded machine.
var testTiming = NetcheckTiming{FirstAnswer: 250 * time.Millisecond, Filter: 250 * time.Millisecond, Hairpin: 250 * time.Millisecond}

func TestNetcheck(t *testing.T) {
	t.Parallel()
	type nat struct {
		mapping func(n netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort // nil: no NAT
		echo    bool                                                            // hairpinning
	}
	eim := nat{mapping: endpointIndependent}
	tests := []struct {
		name          string
		nat           nat
		server        stunBehaviour
		primarySilent bool   // a silent primary before the fake
		noServer      bool   // only a silent server: UDP blocked
		gatewayExt    string // the gateway's NAT-PMP external IP; "": the NAT's
		mapping       wire.NATMapping
		filtering     wire.NATFiltering
		alloc         wire.PortAllocation
		step          int
		hairpin       *bool
		note          string // a note that must appear; "": no notes
	}{
		{
			name: "no NAT", mapping: wire.MappingNone, filtering: wire.FilteringNone, alloc: wire.PortAllocPreserve, hairpin: new(true),
		},
		{
			name: "no NAT, stateful firewall", server: stunBehaviour{filter: addressPortDependent},
			mapping: wire.MappingNone, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocPreserve, hairpin: new(true),
			note: "no NAT, but a firewall drops unsolicited UDP",
		},
		{
			name: "full cone", nat: nat{mapping: endpointIndependent, echo: true},
			mapping: wire.MappingEndpointIndependent, filtering: wire.FilteringEndpointIndependent, alloc: wire.PortAllocUnknown, hairpin: new(true),
		},
		{
			name: "restricted cone", nat: eim, server: stunBehaviour{filter: addressDependent},
			mapping: wire.MappingEndpointIndependent, filtering: wire.FilteringAddressDependent, alloc: wire.PortAllocUnknown, hairpin: new(false),
		},
		{
			name: "port-restricted cone behind a carrier NAT", nat: eim, server: stunBehaviour{filter: addressPortDependent}, gatewayExt: "10.0.0.2",
			mapping: wire.MappingEndpointIndependent, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocUnknown, hairpin: new(false),
			note: "a second NAT",
		},
		{
			name: "symmetric, sequential ports",
			nat: nat{mapping: func(n netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort {
				return portsPerServer(n, map[int]int{sockAltIP: 1, sockAlternate: 2})
			}},
			server:  stunBehaviour{filter: addressPortDependent},
			mapping: wire.MappingAddressPortDependent, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocSequential, step: 1, hairpin: new(false),
		},
		{
			name: "symmetric, random ports",
			nat: nat{mapping: func(n netip.AddrPort) func(netip.AddrPort, int) netip.AddrPort {
				return portsPerServer(n, map[int]int{sockAltIP: -1000, sockAlternate: 3000})
			}},
			server:  stunBehaviour{filter: addressPortDependent},
			mapping: wire.MappingAddressPortDependent, filtering: wire.FilteringAddressPortDependent, alloc: wire.PortAllocRandom, hairpin: new(false),
		},
		{
			name: "server ignores CHANGE-REQUEST", server: stunBehaviour{ignore: true},
			mapping: wire.MappingNone, filtering: wire.FilteringUnknown, alloc: wire.PortAllocPreserve, hairpin: new(true),
			note: "the server ignores CHANGE-REQUEST",
		},
		{
			name: "server without OTHER-ADDRESS behind a NAT", nat: eim, server: stunBehaviour{noOther: true},
			mapping: wire.MappingUnknown, filtering: wire.FilteringUnknown, alloc: wire.PortAllocUnknown, hairpin: new(false),
			note: "start the coordinator with --stun-alternate",
		},
		{
			name: "primary silent, secondary answers", primarySilent: true,
			mapping: wire.MappingNone, filtering: wire.FilteringNone, alloc: wire.PortAllocPreserve, hairpin: new(true),
			note: "did not answer within",
		},
		{
			name: "UDP blocked", noServer: true,
			mapping: wire.MappingUnknown, filtering: wire.FilteringUnknown, alloc: wire.PortAllocUnknown,
			note: "no STUN server answered over UDP",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var natAddr netip.AddrPort
			var mapped func(netip.AddrPort, int) netip.AddrPort
			if tc.nat.mapping != nil {
				natAddr = natSocket(t, tc.nat.echo)
				mapped = tc.nat.mapping(natAddr)
			}
			var servers []string
			if tc.primarySilent || tc.noServer {
				servers = append(servers, closedUDP(t).String())
			}
			if !tc.noServer {
				servers = append(servers, newFakeSTUN(t, tc.server, mapped).String())
			}
			gwExt := natAddr.Addr()
			if tc.gatewayExt != "" {
				gwExt = netip.MustParseAddr(tc.gatewayExt)
			} else if !gwExt.IsValid() {
				gwExt = netip.MustParseAddr("127.0.0.1")
			}
			gw := fakeGateway(t, gwExt)
			opts := NetcheckOptions{
				Servers:    servers,
				LocalAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("127.0.0.1")} },
				PortMap:    portmap.ProbeOptions{Gateway: gw.Addr(), ServerPort: gw.Port(), SSDP: fakeSSDP(t), Timeout: time.Second},
				Timing:     testTiming,
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			r := Netcheck(ctx, opts)

			if r.Mapping != tc.mapping || r.Filtering != tc.filtering || r.PortAllocation != tc.alloc || r.PortStep != tc.step {
				t.Errorf("mapping %q filtering %q allocation %q step %d; want %q %q %q %d",
					r.Mapping, r.Filtering, r.PortAllocation, r.PortStep, tc.mapping, tc.filtering, tc.alloc, tc.step)
			}
			if (r.Hairpin == nil) != (tc.hairpin == nil) || r.Hairpin != nil && *r.Hairpin != *tc.hairpin {
				t.Errorf("hairpin %v, want %v", fmtBool(r.Hairpin), fmtBool(tc.hairpin))
			}
			checkAddresses(t, r, tc.noServer, natAddr, servers)
			want := PortMapping{NATPMP: true, UPnP: true, Gateway: "127.0.0.1"}
			if r.PortMapping != want {
				t.Errorf("port mapping %+v, want %+v", r.PortMapping, want)
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

// checkAddresses checks udp, public_address, latency_ms and stun_server.
func checkAddresses(t *testing.T, r Report, blocked bool, natAddr netip.AddrPort, servers []string) {
	t.Helper()
	if blocked {
		if r.UDP || r.PublicAddress != "" || r.LatencyMs != nil || r.STUNServer != "" {
			t.Errorf("UDP blocked, yet udp %v public %q latency %v server %q", r.UDP, r.PublicAddress, r.LatencyMs, r.STUNServer)
		}
		return
	}
	if !r.UDP || r.LatencyMs == nil || *r.LatencyMs < 0 {
		t.Errorf("udp %v latency %v; want true and a latency", r.UDP, r.LatencyMs)
	}
	if r.STUNServer != servers[len(servers)-1] {
		t.Errorf("stun_server %q, want the answering %q", r.STUNServer, servers[len(servers)-1])
	}
	pub, err := netip.ParseAddrPort(r.PublicAddress)
	switch {
	case err != nil:
		t.Errorf("public_address %q: %v", r.PublicAddress, err)
	case natAddr.IsValid() && pub != natAddr:
		t.Errorf("public_address %v, want the NAT's %v", pub, natAddr)
	case !natAddr.IsValid() && (pub.Addr() != netip.MustParseAddr("127.0.0.1") || pub.Port() == 0):
		t.Errorf("public_address %v, want our own 127.0.0.1:port", pub)
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "null"
	}
	return strconv.FormatBool(*b)
}

// TestReportJSON pins the JSON interface scripts rely on.
func TestReportJSON(t *testing.T) {
	r := Report{
		UDP: true, PublicAddress: "198.18.0.7:41820", Mapping: wire.MappingEndpointIndependent,
		Filtering: wire.FilteringAddressDependent, PortAllocation: wire.PortAllocPreserve, Hairpin: new(false),
		LatencyMs: new(12.5), STUNServer: "coord.example.com:3478",
		PortMapping: PortMapping{PCP: true, Gateway: "192.168.1.1"}, Notes: []string{},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"udp":true,"public_address":"198.18.0.7:41820","mapping":"endpoint-independent",` +
		`"filtering":"address-dependent","port_allocation":"preserve","port_step":0,"hairpin":false,` +
		`"latency_ms":12.5,"stun_server":"coord.example.com:3478",` +
		`"port_mapping":{"nat_pmp":false,"pcp":true,"upnp":false,"gateway":"192.168.1.1"},"notes":[]}`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", b, want)
	}
	unknown := Netcheck(t.Context(), NetcheckOptions{PortMap: portmap.ProbeOptions{
		Gateway: netip.MustParseAddr("127.0.0.1"), ServerPort: closedUDP(t).Port(), SSDP: closedUDP(t), Timeout: 100 * time.Millisecond,
	}})
	b, err = json.Marshal(unknown)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"udp":false`, `"public_address":""`, `"mapping":"unknown"`, `"filtering":"unknown"`, `"hairpin":null`, `"latency_ms":null`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON without a STUN server %s lacks %s", b, field)
		}
	}
}

// TestNetcheckTimingDefaults: options that leave Timing zero, as the
// netcheck command does, get the waits real networks need.
func TestNetcheckTimingDefaults(t *testing.T) {
	var zero NetcheckTiming
	if got := zero.firstAnswer(); got != firstAnswerTimeout {
		t.Errorf("first answer wait %v, want %v", got, firstAnswerTimeout)
	}
	if got := zero.filter(); got != filterTimeout {
		t.Errorf("filtering probe wait %v, want %v", got, filterTimeout)
	}
	if got := zero.hairpin(); got != hairpinWait {
		t.Errorf("hairpin wait %v, want %v", got, hairpinWait)
	}
}
