package portmap

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// probeTimeout bounds each probe. A case where some services answer and
// others stay silent waits all of it, so it is short; the answers come
// over loopback, at once.
const probeTimeout = 250 * time.Millisecond

func TestProbe(t *testing.T) {
	both := func(req []byte) []byte {
		if len(req) > 0 && req[0] == pcpVersion {
			return pcpGateway{}.handle(req)
		}
		return natpmpGateway{}.handle(req)
	}
	igd := func([]byte) []byte { return []byte("HTTP/1.1 200 OK\r\nST: " + igdType + "\r\n\r\n") }
	tests := []struct {
		name                    string
		gateway, ssdp           func([]byte) []byte // nil: the port is closed
		wantPMP, wantPCP, wantU bool
	}{
		{name: "NAT-PMP, PCP and UPnP", gateway: both, ssdp: igd, wantPMP: true, wantPCP: true, wantU: true},
		{name: "NAT-PMP only", gateway: natpmpGateway{}.handle, wantPMP: true},
		{name: "PCP only", gateway: pcpGateway{}.handle, wantPCP: true},
		{name: "UPnP only", ssdp: igd, wantU: true},
		{name: "nothing", gateway: func([]byte) []byte { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := ProbeOptions{Gateway: netip.MustParseAddr("127.0.0.1"), Timeout: probeTimeout}
			gw, ssdp := closedPort(t), closedPort(t)
			if tc.gateway != nil {
				gw = newFakeServer(t, tc.gateway).addr()
			}
			if tc.ssdp != nil {
				ssdp = newFakeServer(t, tc.ssdp).addr()
			}
			opts.ServerPort, opts.SSDP = gw.Port(), ssdp
			r := Probe(t.Context(), opts)
			if r.NATPMP != tc.wantPMP || r.PCP != tc.wantPCP || r.UPnP != tc.wantU {
				t.Errorf("NAT-PMP %v PCP %v UPnP %v, want %v %v %v (errors: %v; %v; %v)",
					r.NATPMP, r.PCP, r.UPnP, tc.wantPMP, tc.wantPCP, tc.wantU, r.NATPMPErr, r.PCPErr, r.UPnPErr)
			}
			if r.Gateway != opts.Gateway || r.GatewayErr != nil {
				t.Errorf("gateway %v (%v), want %v", r.Gateway, r.GatewayErr, opts.Gateway)
			}
			if tc.wantPMP && r.ExternalIP != testExternal {
				t.Errorf("external IP %v, want %v", r.ExternalIP, testExternal)
			}
			for name, err := range map[string]error{"NAT-PMP": r.NATPMPErr, "PCP": r.PCPErr, "UPnP": r.UPnPErr} {
				if tc.gateway == nil && name != "UPnP" && !errors.Is(err, ErrNoAnswer) {
					t.Errorf("%s error %v, want ErrNoAnswer", name, err)
				}
			}
		})
	}
}
