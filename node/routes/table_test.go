package routes

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/tun"
)

var (
	overlay = []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("fd6d:6573:686e::/48")}
	exit    = []netip.Prefix{wire.ExitRouteV4, wire.ExitRouteV6}
)

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = netip.MustParsePrefix(x)
	}
	return out
}

// peer is a node serving routes and primary for primary.
func peer(b byte, name string, online bool, routes, primary []netip.Prefix) wire.Node {
	return wire.Node{Name: name, PublicKey: crypto.PublicKey{0: b}, Online: online, Routes: routes, PrimaryRoutes: primary}
}

func TestAllowedIPs(t *testing.T) {
	office := peer(1, "office", true, append(pfx("192.168.10.0/24"), exit...), pfx("192.168.10.0/24"))
	hostile := peer(2, "hostile", true, nil, pfx("100.88.0.0/24", "127.0.0.0/8", "0.0.0.0/0", "10.9.0.0/16"))
	tests := []struct {
		name  string
		prefs Prefs
		node  wire.Node
		want  []netip.Prefix
	}{
		{"subnet router", Prefs{}, office, pfx("192.168.10.0/24")},
		{"the chosen exit node", Prefs{ExitNode: "office"}, office, append(pfx("192.168.10.0/24"), exit...)},
		{"another exit node chosen", Prefs{ExitNode: "other"}, office, pfx("192.168.10.0/24")},
		{"routes into the overlay, reserved or default refused", Prefs{}, hostile, pfx("10.9.0.0/16")},
		{"chosen, but serves no exit routes", Prefs{ExitNode: "hostile"}, hostile, pfx("10.9.0.0/16")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable(nil, overlay, tt.prefs, nil)
			if got := tab.AllowedIPs(tt.node); !slices.Equal(got, tt.want) {
				t.Fatalf("AllowedIPs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOSRoutes(t *testing.T) {
	lan := "192.168.1.0/24"
	local := pfx(lan, "2001:db8:1::/64", "100.88.0.0/16", "127.0.0.0/8", "fe80::/64")
	always := pfx("169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "fe80::/10", "ff00::/8")
	sorted := func(ps ...[]netip.Prefix) []netip.Prefix {
		out := slices.Concat(ps...)
		wire.SortRoutes(out)
		return out
	}
	tests := []struct {
		name  string
		own   []netip.Prefix
		prefs Prefs
		peers []wire.Node
		want  tun.RouteSet
	}{
		{"nothing to route", nil, Prefs{}, nil, tun.RouteSet{}},
		{"office LAN", nil, Prefs{}, []wire.Node{peer(1, "office", true, pfx("10.20.0.0/16"), pfx("10.20.0.0/16"))},
			tun.RouteSet{Via: pfx("10.20.0.0/16")}},
		{"a route inside this LAN is not installed", nil, Prefs{}, []wire.Node{peer(1, "office", true, pfx("192.168.1.0/25", lan), pfx("192.168.1.0/25", lan))},
			tun.RouteSet{}},
		{"a route covering this LAN leaves it local", nil, Prefs{}, []wire.Node{peer(1, "office", true, pfx("192.168.0.0/16"), pfx("192.168.0.0/16"))},
			tun.RouteSet{Via: pfx("192.168.0.0/16"), Bypass: pfx(lan)}},
		{"its own routes stay direct", pfx("10.20.0.0/16"), Prefs{}, []wire.Node{peer(1, "office", true, pfx("10.20.0.0/16", "10.30.0.0/16"), pfx("10.20.0.0/16", "10.30.0.0/16"))},
			tun.RouteSet{Via: pfx("10.30.0.0/16"), Bypass: pfx("10.20.0.0/16")}},
		{"exit node: the LAN goes too", nil, Prefs{ExitNode: "office"}, []wire.Node{peer(1, "office", true, exit, nil)},
			tun.RouteSet{Via: exit, Bypass: sorted(always)}},
		{"exit node with LAN access", nil, Prefs{ExitNode: "office", AllowLAN: true}, []wire.Node{peer(1, "office", true, exit, nil)},
			tun.RouteSet{Via: exit, Bypass: sorted(always, pfx(lan, "2001:db8:1::/64"))}},
		{"exit node unknown: blocked, not leaked", nil, Prefs{ExitNode: "gone"}, nil,
			tun.RouteSet{Via: exit, Bypass: sorted(always)}},
		{"a router using an exit node forwards to its own LAN", pfx("10.20.0.0/16"), Prefs{ExitNode: "office"}, []wire.Node{peer(1, "office", false, exit, nil)},
			tun.RouteSet{Via: exit, Bypass: sorted(always, pfx("10.20.0.0/16"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changes := 0
			tab := NewTable(tt.own, overlay, tt.prefs, func() { changes++ })
			tab.SetLocal(local)
			for _, n := range tt.peers {
				if err := tab.Upsert(n, nil); err != nil {
					t.Fatal(err)
				}
			}
			if changes != 1+len(tt.peers) {
				t.Errorf("%d change notices, want one per change", changes)
			}
			if got := tab.OSRoutes(); !got.Equal(tt.want) {
				t.Fatalf("OSRoutes =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSetPrefsChecksTheExitNode(t *testing.T) {
	tab := NewTable(nil, overlay, Prefs{}, nil)
	tab.Upsert(peer(1, "office", true, exit, nil), nil)
	tab.Upsert(peer(2, "laptop", true, nil, nil), nil)
	for name, want := range map[string]string{
		"nobody": `no peer is named "nobody" (exit nodes: office)`,
		"laptop": "laptop serves no approved exit routes (exit nodes: office)",
	} {
		if _, err := tab.SetPrefs(Prefs{ExitNode: name}); !errors.Is(err, ErrNotExitNode) || err.Error() != "not an exit node: "+want {
			t.Errorf("SetPrefs(%s) = %v, want %q", name, err, want)
		}
	}
	if old, err := tab.SetPrefs(Prefs{ExitNode: "office", AllowLAN: true}); err != nil || old != (Prefs{}) {
		t.Fatalf("SetPrefs(office) = %+v, %v", old, err)
	}
	st, ok := tab.Exit()
	if !ok || !st.Known || !st.Serves || !st.Online || st.Peer != (crypto.PublicKey{0: 1}) {
		t.Fatalf("Exit = %+v, %v", st, ok)
	}
	// The exit node loses its approval: it stays chosen (traffic blocked),
	// and the state says why.
	tab.Upsert(peer(1, "office", false, nil, nil), nil)
	if st, _ := tab.Exit(); st.Serves || st.Online {
		t.Fatalf("Exit after the rejection = %+v", st)
	}
	if _, err := tab.SetPrefs(Prefs{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Exit(); ok {
		t.Fatal("an exit node after clearing it")
	}
}

func TestUsedShowsShadowedRoutes(t *testing.T) {
	tab := NewTable(pfx("10.20.0.0/16"), overlay, Prefs{}, nil)
	tab.SetLocal(pfx("192.168.1.0/24"))
	tab.Upsert(peer(1, "office", true, nil, pfx("192.168.1.0/24", "10.20.0.0/16", "10.30.0.0/16")), nil)
	got := tab.Used()
	want := []Route{
		{Prefix: netip.MustParsePrefix("10.20.0.0/16"), Peer: "office", Own: true},
		{Prefix: netip.MustParsePrefix("10.30.0.0/16"), Peer: "office"},
		{Prefix: netip.MustParsePrefix("192.168.1.0/24"), Peer: "office", Shadow: netip.MustParsePrefix("192.168.1.0/24")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Used =\n%+v\nwant\n%+v", got, want)
	}
}
