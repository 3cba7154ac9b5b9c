package portmap

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const wgPort = 41820

func TestMapperNATPMP(t *testing.T) {
	tests := []struct {
		name     string
		gw       natpmpGateway
		want     netip.AddrPort
		wantLife time.Duration
		wantErr  error
	}{
		{
			name:     "port preserved",
			gw:       natpmpGateway{maxLife: 7200},
			want:     netip.AddrPortFrom(testExternal, wgPort),
			wantLife: 7200 * time.Second,
		},
		{
			name:     "other port, shorter lifetime",
			gw:       natpmpGateway{maxLife: 3600, portFor: func(uint16, uint16) uint16 { return 50000 }},
			want:     netip.AddrPortFrom(testExternal, 50000),
			wantLife: time.Hour,
		},
		{name: "refused", gw: natpmpGateway{result: 2, maxLife: 7200}, wantErr: &ResultError{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, tc.gw.handle)
			m := &Mapper{Gateway: srv.addr().Addr(), ServerPort: srv.addr().Port(), Timeout: answerTimeout}
			got, life, err := m.Map(t.Context(), wgPort)
			checkErr(t, err, tc.wantErr, "")
			if got != tc.want || life != tc.wantLife {
				t.Fatalf("mapped %v for %v, want %v for %v", got, life, tc.want, tc.wantLife)
			}
			if tc.wantErr != nil {
				return
			}
			reqs := srv.requests()
			hexEqual(t, "external address request", reqs[0], []byte{0, 0})
			hexEqual(t, "map request", reqs[1], natpmpMapRequest(wgPort, wgPort, 7200))
			if err := m.Unmap(t.Context()); err != nil {
				t.Fatalf("unmap: %v", err)
			}
			reqs = srv.requests()
			hexEqual(t, "delete request", reqs[len(reqs)-1], []byte{0, 1, 0, 0, 0xa3, 0x5c, 0, 0, 0, 0, 0, 0})
			if err := m.Unmap(t.Context()); err != nil || len(srv.requests()) != len(reqs) {
				t.Errorf("a second unmap sent a request or failed: %v", err)
			}
		})
	}
}

// TestMapperPCPFallback: a PCP-only gateway answers NAT-PMP with
// "Unsupported Version"; the mapper maps with PCP MAP, then deletes with
// the same nonce and lifetime 0.
func TestMapperPCPFallback(t *testing.T) {
	srv := newFakeServer(t, pcpGateway{port: 50000, maxLife: 3600}.handle)
	m := &Mapper{Gateway: srv.addr().Addr(), ServerPort: srv.addr().Port(), Timeout: answerTimeout}
	got, life, err := m.Map(t.Context(), wgPort)
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	if want := netip.AddrPortFrom(testExternal, 50000); got != want || life != time.Hour {
		t.Fatalf("mapped %v for %v, want %v for 1h", got, life, want)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || len(reqs[1]) != pcpMapLen {
		t.Fatalf("requests % x; want NAT-PMP then a PCP MAP", reqs)
	}
	mapReq := reqs[1]
	nonce := [12]byte(mapReq[24:36])
	hexEqual(t, "MAP", mapReq, pcpMapRequest(pcpMapping{nonce: nonce, internal: wgPort}, netip.MustParseAddr("127.0.0.1"), netip.AddrPortFrom(netip.Addr{}, wgPort), 7200))
	if err := m.Unmap(t.Context()); err != nil {
		t.Fatalf("unmap: %v", err)
	}
	reqs = srv.requests()
	del := reqs[len(reqs)-1]
	if len(del) != pcpMapLen || binary.BigEndian.Uint32(del[4:8]) != 0 || [12]byte(del[24:36]) != nonce {
		t.Errorf("delete % x: want a MAP with lifetime 0 and nonce % x", del, nonce)
	}
}

// TestMapperRun drives renewal with a fake clock: the mapper waits half the
// granted lifetime, renews suggesting the granted port, reports a changed
// port, and deletes the mapping when its context ends.
func TestMapperRun(t *testing.T) {
	var port atomicPort
	port.Store(50000)
	srv := newFakeServer(t, natpmpGateway{maxLife: 3600, portFor: func(uint16, uint16) uint16 { return port.Load() }}.handle)
	waits, fire := make(chan time.Duration, 1), make(chan time.Time)
	m := &Mapper{
		Gateway: srv.addr().Addr(), ServerPort: srv.addr().Port(), Timeout: answerTimeout,
		after: func(d time.Duration) <-chan time.Time { waits <- d; return fire },
	}
	updates := make(chan netip.AddrPort, 4)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, wgPort, func(a netip.AddrPort) { updates <- a }) }()

	expect := func(want netip.AddrPort) {
		t.Helper()
		select {
		case got := <-updates:
			if got != want {
				t.Fatalf("update %v, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no update to %v", want)
		}
		select {
		case d := <-waits:
			if d != 30*time.Minute {
				t.Fatalf("renewal after %v, want half the 1h lifetime", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("mapper never waited for renewal")
		}
	}
	expect(netip.AddrPortFrom(testExternal, 50000))

	port.Store(50001) // the gateway moves the mapping at renewal
	fire <- time.Now()
	expect(netip.AddrPortFrom(testExternal, 50001))
	reqs := srv.requests()
	hexEqual(t, "renewal", reqs[3], natpmpMapRequest(wgPort, 50000, 7200))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	reqs = srv.requests()
	hexEqual(t, "delete on exit", reqs[len(reqs)-1], natpmpMapRequest(wgPort, 0, 0))
}

func TestMapperBadInput(t *testing.T) {
	tests := []struct {
		name    string
		gateway netip.Addr
		port    uint16
		want    string
	}{
		{"no gateway", netip.Addr{}, wgPort, "gateway invalid IP is not an IPv4 address"},
		{"IPv6 gateway", netip.MustParseAddr("fe80::1"), wgPort, "gateway fe80::1 is not an IPv4 address"},
		{"port 0", netip.MustParseAddr("127.0.0.1"), 0, "internal port 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Mapper{Gateway: tc.gateway}
			_, _, err := m.Map(t.Context(), tc.port)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
