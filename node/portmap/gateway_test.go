package portmap

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseProcRoute(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name    string
		table   string
		want    string
		wantErr bool
	}{
		{
			name: "one default route",
			table: "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
				"eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
			want: "192.168.1.1",
		},
		{
			name: "lowest metric wins",
			table: "wlan0\t00000000\t0100000A\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
				"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n",
			want: "192.168.1.1",
		},
		{
			name:    "default route without gateway (point-to-point)",
			table:   "wg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n",
			wantErr: true,
		},
		{
			name:    "route down",
			table:   "eth0\t00000000\t0101A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0\n",
			wantErr: true,
		},
		{
			name:    "no default route",
			table:   "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
			wantErr: true,
		},
		{name: "empty", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcRoute(strings.NewReader(header+tc.table), binary.LittleEndian)
			if tc.wantErr {
				if !errors.Is(err, errNoDefaultRoute) {
					t.Fatalf("got %v, %v; want errNoDefaultRoute", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestParseRouteGet(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{
			name: "macOS default route",
			out: "   route to: default\ndestination: default\n       mask: default\n    gateway: 192.168.1.1\n" +
				"  interface: en0\n      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING,GLOBAL>\n",
			want: "192.168.1.1",
		},
		{name: "through a tunnel", out: "   route to: default\n    gateway: link#12\n  interface: utun3\n"},
		{name: "no gateway line", out: "route: writing to routing socket: not in table\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRouteGet([]byte(tc.out))
			if tc.want == "" {
				if !errors.Is(err, errNoDefaultRoute) {
					t.Fatalf("got %v, %v; want errNoDefaultRoute", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
