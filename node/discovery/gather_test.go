package discovery

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// addrs returns n IPv4 then m IPv6 global unicast addresses.
func addrs(n, m int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	for i := range m {
		out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	return out
}

func TestGatherLocalBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		locals    []netip.Addr
		want      int
		wantLast4 bool // the last candidate kept is IPv4
	}{
		{"few", addrs(2, 3), 5, false},
		{"exactly the bound", addrs(maxLocal, 0), maxLocal, true},
		{"many IPv6", addrs(4, 200), maxLocal, false},
		{"many IPv4", addrs(maxLocal+1, 10), maxLocal, true},
	} {
		g := Gatherer{LocalAddrs: func() []netip.Addr { return tc.locals }}
		res := g.Gather(context.Background(), Servers{}, 41820, Result{}, nil)
		if len(res.Endpoints) != tc.want {
			t.Errorf("%s: %d candidates, want %d", tc.name, len(res.Endpoints), tc.want)
			continue
		}
		for _, e := range res.Endpoints {
			if e.Kind != wire.EndpointPublic {
				t.Errorf("%s: candidate %v of kind %q, want %q", tc.name, e.Addr, e.Kind, wire.EndpointPublic)
			}
		}
		if last := res.Endpoints[len(res.Endpoints)-1].Addr.Addr(); last.Is4() != tc.wantLast4 {
			t.Errorf("%s: last candidate kept %v, want IPv4 %v", tc.name, last, tc.wantLast4)
		}
	}
}

// dualStack is a Transport to two STUN servers: the IPv4 one sees the
// node through a NAT, the IPv6 one sees its own address (no NAT) or, when
// silent6, never answers (IPv6 blackholed on the way).
type dualStack struct {
	p       *Prober
	nat4    netip.AddrPort
	addr6   netip.AddrPort
	silent6 bool

	mu   sync.Mutex
	sent []netip.AddrPort
}

func (d *dualStack) WriteTo(pkt []byte, to netip.AddrPort) error {
	d.mu.Lock()
	d.sent = append(d.sent, to)
	d.mu.Unlock()
	req := &stun.Message{Raw: append([]byte{}, pkt...)}
	if err := req.Decode(); err != nil {
		return err
	}
	mapped := d.nat4
	if to.Addr().Is6() {
		if d.silent6 {
			return nil
		}
		mapped = d.addr6
	}
	go d.p.HandleSTUN(mappedTo(req, mapped), to)
	return nil
}

func (d *dualStack) sentTo() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sent)
}

// TestGatherBothFamilies: a dual-stack host behind an IPv4 NAT and an IPv6
// firewall offers its LAN address, its global IPv6 address as public and
// its IPv4 mapping; IPv6 STUN shows no NAT, so no IPv6 mapping is added.
// A blackholed IPv6 doesn't hold back the IPv4 result, and a host without
// IPv4 asks no IPv4 server.
func TestGatherBothFamilies(t *testing.T) {
	t.Parallel()
	lan := netip.MustParseAddr("10.1.0.2")
	global := netip.MustParseAddr("2001:2:0:1::2")
	const port = 41820
	servers := Servers{
		V4: []Target{{Addr: netip.MustParseAddrPort("198.18.0.1:3478")}},
		V6: []Target{{Addr: netip.MustParseAddrPort("[2001:2::1]:3478")}},
	}
	nat4 := netip.MustParseAddrPort("198.18.1.1:40000")
	lanEP := wire.Endpoint{Addr: netip.AddrPortFrom(lan, port), Kind: wire.EndpointLAN}
	publicEP := wire.Endpoint{Addr: netip.AddrPortFrom(global, port), Kind: wire.EndpointPublic}
	stunEP := wire.Endpoint{Addr: nat4, Kind: wire.EndpointSTUN}
	tests := []struct {
		name       string
		locals     []netip.Addr
		silent6    bool
		want       []wire.Endpoint
		wantEarly  []wire.Endpoint // nil: no early report
		want6      wire.NATMapping
		wantNoIPv4 bool
	}{
		{"dual stack", []netip.Addr{lan, global}, false, []wire.Endpoint{lanEP, publicEP, stunEP}, nil, wire.MappingNone, false},
		{"IPv6 blackholed", []netip.Addr{lan, global}, true, []wire.Endpoint{lanEP, publicEP, stunEP}, []wire.Endpoint{lanEP, publicEP, stunEP}, "", false},
		{"IPv6 only", []netip.Addr{global}, false, []wire.Endpoint{publicEP}, nil, wire.MappingNone, true},
		{"IPv4 only", []netip.Addr{lan}, false, []wire.Endpoint{lanEP, stunEP}, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &dualStack{nat4: nat4, addr6: netip.AddrPortFrom(global, port), silent6: tt.silent6}
			tr.p = NewProber(tr)
			g := Gatherer{Prober: tr.p, LocalAddrs: func() []netip.Addr { return tt.locals }}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var early [][]wire.Endpoint
			res := g.Gather(ctx, servers, port, Result{}, func(r Result) {
				early = append(early, r.Endpoints)
				if tt.silent6 {
					// The blackholed family never answers: once IPv4's
					// result is out, the gathering is ended as its
					// deadline would.
					cancel()
				}
			})
			if !SameEndpoints(res.Endpoints, tt.want) {
				t.Errorf("endpoints %v, want %v", res.Endpoints, tt.want)
			}
			if tt.wantEarly == nil && len(early) > 0 {
				t.Errorf("early reports %v, want none (both families answered at once)", early)
			}
			if tt.wantEarly != nil && (len(early) != 1 || !SameEndpoints(early[0], tt.wantEarly)) {
				t.Errorf("early reports %v, want one with %v", early, tt.wantEarly)
			}
			if res.Mapping6.Behaviour != tt.want6 {
				t.Errorf("IPv6 mapping %q, want %q", res.Mapping6.Behaviour, tt.want6)
			}
			if res.STUNErr != nil {
				t.Errorf("STUN error %v, want none (a family answered)", res.STUNErr)
			}
			asked4 := slices.ContainsFunc(tr.sentTo(), func(a netip.AddrPort) bool { return a.Addr().Is4() })
			if asked4 == tt.wantNoIPv4 {
				t.Errorf("asked an IPv4 server: %v, want %v (requests to %v)", asked4, !tt.wantNoIPv4, tr.sentTo())
			}
		})
	}
}
