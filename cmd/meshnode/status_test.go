package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/node/localapi"
)

// TestStatusShowsEachPeersMTU: the text status has an MTU column, "-"
// while a path's MTU is not known.
func TestStatusShowsEachPeersMTU(t *testing.T) {
	st := localapi.Status{
		Self: localapi.Self{Name: "laptop", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.1")}, Interface: "mesh0"},
		Peers: []localapi.Peer{
			{Name: "desktop", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")}, Path: "direct", Endpoint: "198.51.100.7:41820", MTU: 1420, PathMTU: 1480, Online: true},
			{Name: "phone", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.3")}, Path: "direct", Endpoint: "203.0.113.9:41820", MTU: 1328, PathMTU: 1388, Online: true},
			{Name: "vps", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.4")}, Path: "relay", Endpoint: "198.18.0.1:3478", Online: true},
		},
	}
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"NAME": "MTU", "desktop": "1420", "phone": "1328", "vps": "-"}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		if w, ok := want[f[0]]; ok {
			if f[5] != w {
				t.Errorf("%s: MTU column %q, want %q\n%s", f[0], f[5], w, out.String())
			}
			delete(want, f[0])
		}
	}
	if len(want) != 0 {
		t.Errorf("rows missing: %v\n%s", want, out.String())
	}
}
