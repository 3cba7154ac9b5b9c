package wire

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRoutes(t *testing.T) {
	p := netip.MustParsePrefix
	overlay := []netip.Prefix{p("100.88.0.0/16"), p("fd6d:6573:686e::/48")}
	many := make([]netip.Prefix, MaxRoutes+1)
	for i := range many {
		many[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
	}
	tests := []struct {
		name    string
		routes  []netip.Prefix
		wantErr string
	}{
		{"none", nil, ""},
		{"office LANs", []netip.Prefix{p("192.168.10.0/24"), p("10.20.0.0/16"), p("2001:db8:10::/64")}, ""},
		{"exit routes", []netip.Prefix{ExitRouteV4, ExitRouteV6}, ""},
		{"a host", []netip.Prefix{p("203.0.113.7/32")}, ""},
		{"host bits", []netip.Prefix{p("192.168.10.1/24")}, "use 192.168.10.0/24"},
		{"invalid", []netip.Prefix{{}}, "not a prefix"},
		{"IPv4-mapped", []netip.Prefix{p("::ffff:192.168.10.0/120")}, "plain IPv4, e.g. 192.168.10.0/24"},
		{"loopback", []netip.Prefix{p("127.0.0.0/8")}, "overlaps 127.0.0.0/8"},
		{"half the internet", []netip.Prefix{p("128.0.0.0/1")}, "overlaps 169.254.0.0/16"},
		{"link-local v6", []netip.Prefix{p("fe80::/64")}, "overlaps fe80::/10"},
		{"multicast", []netip.Prefix{p("239.0.0.0/8")}, "overlaps 224.0.0.0/4"},
		{"the overlay", []netip.Prefix{p("100.64.0.0/10")}, "overlaps the overlay network 100.88.0.0/16"},
		{"inside the overlay v6", []netip.Prefix{p("fd6d:6573:686e:1::/64")}, "overlaps the overlay network fd6d:6573:686e::/48"},
		{"twice", []netip.Prefix{p("10.1.0.0/16"), p("10.1.0.0/16")}, "listed twice"},
		{"too many", many, "at most 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRoutes(tt.routes, overlay)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("CheckRoutes: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckRoutes = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestExitRoutes(t *testing.T) {
	p := netip.MustParsePrefix
	if !OffersExit([]netip.Prefix{p("10.0.0.0/8"), p("::/0")}) {
		t.Error("::/0 is an exit route")
	}
	if OffersExit([]netip.Prefix{p("10.0.0.0/8"), p("0.0.0.0/1")}) {
		t.Error("0.0.0.0/1 is no exit route")
	}
}

func TestSortRoutes(t *testing.T) {
	p := netip.MustParsePrefix
	got := []netip.Prefix{p("::/0"), p("10.1.0.0/24"), p("10.1.0.0/16"), p("0.0.0.0/0")}
	SortRoutes(got)
	want := []netip.Prefix{p("0.0.0.0/0"), p("10.1.0.0/16"), p("10.1.0.0/24"), p("::/0")}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sorted %v, want %v", got, want)
		}
	}
}
