package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/node/localapi"
)

var dnsOn = localapi.DNS{
	Enabled:   true,
	Domain:    "mesh.internal",
	Listen:    []string{"100.88.0.1:53", "[fd6d:6573:686e::1]:53"},
	OS:        "systemd-resolved",
	Upstreams: []string{"192.0.2.53:53"},
	Records: []localapi.DNSRecord{
		{Name: "desktop.mesh.internal", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")}, Kind: "peer"},
		{Name: "nas.mesh.internal", Addresses: []netip.Addr{netip.MustParseAddr("192.168.1.10")}, Kind: "extra"},
	},
	Counters: map[string]uint64{"queries": 7, "answered": 5},
}

// Status's dns line and `meshnode dns status` say what the resolver
// serves, how the OS asks it, or why it doesn't.
func TestDNSStatusText(t *testing.T) {
	t.Parallel()
	none := dnsOn
	none.OS, none.OSNote = "none", "no systemd-resolved in this network namespace: /etc/resolv.conf left alone"
	none.Upstreams = nil
	unbound := dnsOn
	unbound.Listen, unbound.ListenError = nil, "resolver on udp 100.88.0.1:53: permission denied"
	off := localapi.DNS{OS: "none", OSNote: "accept_dns is false: no resolver, the OS's DNS untouched"}
	tests := []struct {
		name     string
		dns      localapi.DNS
		line     string   // status's line
		contains []string // in `dns status`
	}{
		{"split DNS through resolved", dnsOn,
			"dns laptop.mesh.internal: resolver 100.88.0.1:53 [fd6d:6573:686e::1]:53 (UDP and TCP), asked through systemd-resolved",
			[]string{"domain     mesh.internal", "os         systemd-resolved\n", "upstreams  192.0.2.53:53", "counters   answered 5, queries 7",
				"desktop.mesh.internal  100.88.0.2    peer", "nas.mesh.internal      192.168.1.10  extra"}},
		{"no split DNS", none,
			"dns laptop.mesh.internal: resolver 100.88.0.1:53 [fd6d:6573:686e::1]:53 (UDP and TCP); the OS does not ask it (see 'meshnode dns status')",
			[]string{"os         none: no systemd-resolved in this network namespace", "upstreams  none: names outside the mesh get SERVFAIL"}},
		{"port 53 refused", unbound,
			"resolver not listening; resolver on udp 100.88.0.1:53: permission denied",
			[]string{"resolver   not listening; resolver on udp 100.88.0.1:53: permission denied"}},
		{"accept_dns false", off, "dns off (accept_dns false)", []string{"resolver  off: accept_dns is false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dnsLine(tt.dns, "laptop"); !strings.Contains(got, tt.line) {
				t.Errorf("status line %q, want it to contain %q", got, tt.line)
			}
			var out bytes.Buffer
			if err := printDNS(&out, tt.dns); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.contains {
				if !strings.Contains(out.String(), w) {
					t.Errorf("dns status:\n%s\nwant it to contain %q", out.String(), w)
				}
			}
		})
	}
}

// `meshnode status NAME` takes the name, the full name or an address.
func TestStatusOfOnePeer(t *testing.T) {
	t.Parallel()
	st := localapi.Status{
		DNS: dnsOn,
		Peers: []localapi.Peer{
			{Name: "desktop", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")}, PublicKey: "key-d"},
			{Name: "phone", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.3")}, PublicKey: "key-p"},
		},
	}
	for arg, want := range map[string]string{
		"desktop": "desktop", "Desktop.Mesh.Internal.": "desktop", "desktop.mesh.internal": "desktop",
		"100.88.0.3": "phone", "key-p": "phone", "tablet": "", "desktop.example.com": "",
	} {
		got := matchPeers(st, arg)
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0].Name != want) {
			t.Errorf("matchPeers(%q) = %+v, want %q", arg, got, want)
		}
	}
}
