package tcppunch

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/testenv"
)

// The kernel lab: five network namespaces the test creates and removes.
//
//	hA 10.0.1.2 ── rA (NAT) 198.18.0.2 ─┐
//	                                     br0 198.18.0.1 (inet: the coordinator)
//	hB 10.0.2.2 ── rB (NAT) 198.18.0.3 ─┘
//
// Each router masquerades (Linux keeps the source port when it is free:
// endpoint-independent mapping, address-and-port-dependent filtering, a
// port-restricted cone), drops every forwarded UDP packet, and drops what
// arrives for itself from outside, as a home router's firewall does. The
// nodes run as child processes (this test binary, re-executed inside
// `ip netns exec`), so every socket they open, including Punch's own, is in
// their namespace.

const (
	// helperEnv makes the re-executed test binary a lab node (TestMain).
	helperEnv  = "MESHNODE_TCPPUNCH_HELPER"
	envPriv    = "MESHNODE_TCPPUNCH_PRIV"
	envPeer    = "MESHNODE_TCPPUNCH_PEER"
	envPort    = "MESHNODE_TCPPUNCH_PORT"
	envCoord   = "MESHNODE_TCPPUNCH_COORD"
	labTable   = "tcppunchlab" // the nftables table in each router
	cmdTimeout = 10 * time.Second
	// labDialAttemptTimeout is the lab nodes' Options.DialAttemptTimeout:
	// production's 5 s scaled down, still past the kernel's first SYN
	// resend (1 s), so each scenario below keeps its order of events in
	// a fraction of the time.
	labDialAttemptTimeout = 1500 * time.Millisecond
	// helperTimeout bounds a lab node's whole life.
	helperTimeout = 60 * time.Second
	// udpBlockedWait is how long the UDP check waits for a datagram that
	// must not arrive: one that passes crosses the veths and the bridge in
	// microseconds. udpPassWait bounds the wait for one that must arrive.
	udpBlockedWait = 250 * time.Millisecond
	udpPassWait    = cmdTimeout
	// udpProbes is how many datagrams each UDP probe sends.
	udpProbes = 3
)

var (
	coordAddr = netip.MustParseAddrPort("198.18.0.1:7000")
	udpAddr   = netip.MustParseAddrPort("198.18.0.1:7001")
)

// routerRules is each router's ruleset: NAT, UDP blocked, inbound filtered.
const routerRules = `table ip ` + labTable + ` {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto udp counter drop
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
}
`

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := runHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "tcppunch lab node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The NAT lab's scenarios wait on the kernel's SYN timers, each in
	// namespaces of its own: all of them run at once.
	testenv.MainParallel(m, 4)
}

// site is one NATed home network.
type site struct {
	name string
	wan  netip.Addr   // the router's public address
	lan  netip.Prefix // router .1, host .2
	port uint16       // the node's punch port
}

func TestPunchThroughNAT(t *testing.T) {
	tools := needLab(t)
	tests := []struct {
		name string
		// offset delays the second node's punch after the first's: the
		// scenario's input (rendezvous cues never arrive at once), not a
		// synchronisation.
		offset time.Duration
	}{
		{"together", 0},
		// The first node's SYNs are dropped at the second NAT for a while;
		// its socket stays in SYN-SENT (after the kernel's first resend at
		// 1 s, within labDialAttemptTimeout) and the late SYN crosses into
		// it.
		{"second node 1.2 s late", 1200 * time.Millisecond},
		// Past the attempt timeout: the first node's socket has given up
		// and a fresh one (or the listener) meets the late SYN, 1 s into
		// the next attempt; the first NAT's entry from the earlier SYNs is
		// still open.
		{"second node 2.5 s late", labDialAttemptTimeout + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each lab is its own set of namespaces
			l := newLab(t, tools)
			sites := [2]site{
				{"a", netip.MustParseAddr("198.18.0.2"), netip.MustParsePrefix("10.0.1.0/24"), 41641},
				{"b", netip.MustParseAddr("198.18.0.3"), netip.MustParsePrefix("10.0.2.0/24"), 41642},
			}
			inet := l.internet()
			var hosts, routers [2]string
			for i, s := range sites {
				routers[i], hosts[i] = l.addSite(inet, s)
			}
			l.coordinator(inet)
			l.checkUDPBlocked(inet, routers[0], hosts[0])

			privs := [2]crypto.PrivateKey{newKey(t), newKey(t)}
			var nodes [2]*labNode
			for i := range nodes {
				nodes[i] = l.startNode(hosts[i], sites[i].name, privs[i], privs[1-i].Public(), sites[i].port)
			}
			var mappings [2]netip.AddrPort
			for i, n := range nodes {
				m, err := netip.ParseAddrPort(n.expect(t, "mapping"))
				if err != nil {
					t.Fatalf("node %s: %v", n.name, err)
				}
				// Masquerade keeps the port while it is free.
				if want := netip.AddrPortFrom(sites[i].wan, sites[i].port); m != want {
					t.Errorf("node %s: the coordinator saw %s, want the router's %s", n.name, m, want)
				}
				mappings[i] = m
			}

			start := time.Now()
			nodes[0].tell(t, mappings[1].String())
			if tt.offset > 0 {
				<-time.After(tt.offset)
			}
			nodes[1].tell(t, mappings[0].String())
			for i, n := range nodes {
				remote := n.expect(t, "connected")
				if remote != mappings[1-i].String() {
					t.Errorf("node %s connected to %s, want the peer's mapping %s", n.name, remote, mappings[1-i])
				}
				t.Logf("node %s: punched to %s %v after the first node started", n.name, remote, time.Since(start).Round(time.Millisecond))
			}
			for i, n := range nodes {
				key, payload, _ := strings.Cut(n.expect(t, "frame"), " ")
				peer := privs[1-i].Public()
				if key != peer.String() {
					t.Errorf("node %s got a frame from %s, want the peer's key %s", n.name, key, peer)
				}
				if want := "hello from " + peer.Short(); payload != want {
					t.Errorf("node %s got %q, want %q", n.name, payload, want)
				}
			}
			for _, n := range nodes {
				n.finish(t)
			}
		})
	}
}
