package coordinator

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestElectPrimaries(t *testing.T) {
	t.Parallel()
	p := netip.MustParsePrefix("192.168.10.0/24")
	k := func(b byte) crypto.PublicKey { return crypto.PublicKey{0: b} }
	t0 := time.Unix(1_700_000_000, 0)
	early, late := t0, t0.Add(time.Hour)
	tests := []struct {
		name  string
		cands []candidate
		prev  crypto.PublicKey // zero: none before
		want  crypto.PublicKey
	}{
		{"one router", []candidate{{k(2), true, early}}, crypto.PublicKey{}, k(2)},
		{"first approved wins", []candidate{{k(1), true, late}, {k(2), true, early}}, crypto.PublicKey{}, k(2)},
		{"lowest key among equals", []candidate{{k(3), true, early}, {k(2), true, early}}, crypto.PublicKey{}, k(2)},
		{"online beats first approved", []candidate{{k(1), false, early}, {k(2), true, late}}, crypto.PublicKey{}, k(2)},
		{"primary kept while online", []candidate{{k(1), true, early}, {k(2), true, late}}, k(2), k(2)},
		{"primary offline: failover", []candidate{{k(1), true, late}, {k(2), false, early}}, k(2), k(1)},
		{"all offline: primary kept", []candidate{{k(1), false, early}, {k(2), false, late}}, k(2), k(2)},
		{"all offline, none before: first approved", []candidate{{k(1), false, late}, {k(2), false, early}}, crypto.PublicKey{}, k(2)},
		{"former primary no longer serves", []candidate{{k(1), false, late}}, k(2), k(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := map[netip.Prefix]crypto.PublicKey{}
			if tt.prev != (crypto.PublicKey{}) {
				prev[p] = tt.prev
			}
			got := electPrimaries(map[netip.Prefix][]candidate{p: tt.cands}, prev)
			if got[p] != tt.want || len(got) != 1 {
				t.Fatalf("primary %v (of %d), want %v", got[p].Short(), len(got), tt.want.Short())
			}
		})
	}
}

func TestAutoApprover(t *testing.T) {
	t.Parallel()
	cfg := config.DefaultCoordinator()
	cfg.AutoApproveRoutes = []string{"office=192.168.0.0/16", "gw=exit", "v6=2001:db8::/32"}
	auto, err := newAutoApprover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	tests := []struct {
		tags  []string
		route netip.Prefix
		want  bool
	}{
		{[]string{"office"}, p("192.168.10.0/24"), true},
		{[]string{"office"}, p("192.168.0.0/16"), true},
		{[]string{"office"}, p("192.0.0.0/8"), false},
		{[]string{"office"}, p("10.0.0.0/8"), false},
		{[]string{"office"}, wire.ExitRouteV4, false},
		{[]string{"web"}, p("192.168.10.0/24"), false},
		{[]string{"gw"}, wire.ExitRouteV4, true},
		{[]string{"gw"}, wire.ExitRouteV6, true},
		{[]string{"gw"}, p("192.168.10.0/24"), false},
		{[]string{"v6"}, p("2001:db8:10::/64"), true},
		{[]string{"v6"}, p("::ffff:0:0/96"), false},
	}
	for _, tt := range tests {
		if got := auto(tt.tags, tt.route); got != tt.want {
			t.Errorf("tags %v, route %v: approved %v, want %v", tt.tags, tt.route, got, tt.want)
		}
	}
	cfg.AutoApproveRoutes = []string{"Bad Tag=10.0.0.0/8"}
	if _, err := newAutoApprover(cfg); err == nil {
		t.Error("a bad tag in auto_approve_routes was accepted")
	}
}
