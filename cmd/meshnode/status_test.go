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
	t.Parallel()
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

// The text status says what the node routes: as a router, through its
// peers (a route its LAN keeps is not used), and whether its exit node
// carries its traffic or the traffic is blocked.
func TestStatusShowsRoutesAndExitNode(t *testing.T) {
	t.Parallel()
	p := netip.MustParsePrefix
	lan := p("192.168.10.0/24")
	st := localapi.Status{
		Self: localapi.Self{Name: "home", Interface: "mesh0"},
		Routes: localapi.Routes{
			Advertised: []netip.Prefix{p("10.1.0.0/24")},
			Via: []localapi.PeerRoute{
				{Prefix: lan, Peer: "office", State: localapi.RouteRouted},
				{Prefix: p("192.168.1.0/24"), Peer: "office", State: localapi.RouteLAN, LAN: "192.168.1.0/24"},
			},
		},
		ExitNode: &localapi.ExitNode{Name: "office", State: localapi.ExitOffline},
		Peers:    []localapi.Peer{{Name: "office", Path: "direct", Online: false, Routes: []netip.Prefix{lan}, ExitNodeOption: true}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"advertises 10.1.0.0/24; approved: none; primary for: none",
		"route 192.168.10.0/24 via office\n",
		"route 192.168.1.0/24 via office: not used, this host's LAN 192.168.1.0/24 keeps it",
		"exit node office: UNREACHABLE (offline); internet traffic is blocked, not sent directly",
		"192.168.10.0/24 exit\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	st.ExitNode = &localapi.ExitNode{Name: "office", State: localapi.ExitReachable, Reachable: true, AllowLAN: true}
	out.Reset()
	printStatus(&out, st)
	if want := "exit node office: reachable; internet traffic goes through it (LANs direct)"; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
	// A route the policy lets this node open nothing into is marked.
	st.Peers[0].Routes = []netip.Prefix{p("10.20.0.0/16"), lan}
	st.Peers[0].RoutesDenied = []netip.Prefix{lan}
	out.Reset()
	printStatus(&out, st)
	if want := "10.20.0.0/16 192.168.10.0/24(denied) exit\n"; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
}

// TestStatusShowsPolicyAndReach: the text status names the policy in
// force, the packets each rule denied, and per peer whether this node may
// reach it.
func TestStatusShowsPolicyAndReach(t *testing.T) {
	t.Parallel()
	peers := []localapi.Peer{
		{Name: "office", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2")}, Path: "direct", Online: true, Reach: true, ReachedBy: false},
		{Name: "phone", Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.3")}, Path: "relay", Online: true, Reach: false, ReachedBy: true},
	}
	for _, tc := range []struct {
		name   string
		policy localapi.Policy
		want   []string
	}{
		{"no policy", localapi.Policy{MaxFlows: 65536}, []string{"access policy: none, every member reaches every other"}},
		{"a policy", localapi.Policy{
			Active: true, Version: 4, Rules: 2, Flows: 3, MaxFlows: 65536,
			Denied:       []localapi.RuleDenied{{Rule: "home to office web", In: 5, Out: 1}, {Rule: "ping"}},
			DeniedNoRule: localapi.RuleDenied{In: 2},
		}, []string{
			"access policy version 4: 2 rules, 3 of 65536 flows tracked",
			`  denied against "home to office web": 5 in, 1 out`,
			"  denied, no rule covering the addresses: 2 in, 0 out",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printStatus(&out, localapi.Status{Self: localapi.Self{Name: "laptop"}, Peers: peers, Policy: tc.policy}); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w+"\n") {
					t.Errorf("no line %q in\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), `"ping"`) {
				t.Errorf("a rule that denied nothing is listed:\n%s", out.String())
			}
			reach := map[string]string{}
			for _, line := range strings.Split(out.String(), "\n") {
				if f := strings.Fields(line); len(f) > 1 {
					reach[f[0]] = f[len(f)-2] // ROUTES comes last
				}
			}
			if reach["NAME"] != "REACH" || reach["office"] != "yes" || reach["phone"] != "no" {
				t.Errorf("REACH column: %v\n%s", reach, out.String())
			}
		})
	}
}

// The text status says when the node runs from its cached peer map, since
// when and how old the map is; otherwise it says connected or not.
func TestStatusShowsTheCachedMap(t *testing.T) {
	t.Parallel()
	cached := &localapi.CachedMap{Since: "2026-11-30T09:26:40Z", Updated: "2026-11-30T09:12:03Z", File: "/var/lib/meshnode/peermap.json"}
	tests := []struct {
		name  string
		coord localapi.Coordinator
		want  []string
	}{
		{"connected", localapi.Coordinator{URL: "https://c.example:8443", Connected: true}, []string{"coordinator https://c.example:8443: connected"}},
		{"down", localapi.Coordinator{URL: "https://c.example:8443"}, []string{"NOT connected (existing paths keep working)"}},
		{"one of several", localapi.Coordinator{URL: "https://b.example:8443", Connected: true, Known: 3}, []string{"coordinator https://b.example:8443: connected; 3 coordinators known"}},
		{"from the cache", localapi.Coordinator{URL: "https://c.example:8443", CachedMap: cached},
			[]string{"NOT connected; running since 2026-11-30T09:26:40Z from the cached peer map of 2026-11-30T09:12:03Z", "peermap.json"}},
	}
	for _, tt := range tests {
		st := localapi.Status{Self: localapi.Self{Name: "laptop", Interface: "mesh0"}, Coordinator: tt.coord}
		var out bytes.Buffer
		if err := printStatus(&out, st); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: status lacks %q:\n%s", tt.name, w, out.String())
			}
		}
		if tt.coord.CachedMap == nil && strings.Contains(out.String(), "cached") {
			t.Errorf("%s: status mentions a cached map:\n%s", tt.name, out.String())
		}
	}
}
