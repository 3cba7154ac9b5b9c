package wire

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
)

// TestRelayBindingTiming checks that the relay keeps a binding for as long
// as its node may believe itself bound, whatever refreshes are lost.
func TestRelayBindingTiming(t *testing.T) {
	// maxRTT is a round trip on a bad link; a refresh's auth reaches the
	// relay this much before its OK reaches the node, at most.
	const maxRTT = 2 * time.Second
	for _, tc := range []struct {
		relation string
		ok       bool
	}{
		{"RelayRetry < RelayRefresh: an unbound node asks again sooner than a bound one refreshes",
			RelayRetry < RelayRefresh},
		{"RelayExpiry >= 3*RelayRefresh: two refreshes lost in a row keep the route",
			RelayExpiry >= 3*RelayRefresh},
		{"RelayBindingIdle > RelayExpiry: the relay outlives the node's expiry",
			RelayBindingIdle > RelayExpiry},
		{"RelayBindingIdle > RelayExpiry+RelayRefresh+maxRTT: the node checks its expiry only when a refresh is due, and the relay's clock starts before the node's",
			RelayBindingIdle > RelayExpiry+RelayRefresh+maxRTT},
	} {
		if !tc.ok {
			t.Errorf("want %s (refresh %v, retry %v, expiry %v, binding idle %v)",
				tc.relation, RelayRefresh, RelayRetry, RelayExpiry, RelayBindingIdle)
		}
	}
}

// TestNodeKeepaliveTiming checks that a node notices a lost coordinator
// host from its keepalive sooner than from its pings, without counting a
// busy one lost.
func TestNodeKeepaliveTiming(t *testing.T) {
	for _, tc := range []struct {
		relation string
		ok       bool
	}{
		{"NodeKeepaliveDeadline < StreamPing: the keepalive notices a lost host before the next ping would",
			NodeKeepaliveDeadline < StreamPing},
		{"2*NodeKeepaliveIdle >= StreamPing: an idle stream sends at most one probe between two pings",
			2*NodeKeepaliveIdle >= StreamPing},
		{"NodeKeepaliveCount >= 3: two probes lost in a row on a lossy link don't end a stream",
			NodeKeepaliveCount >= 3},
		{"NodeKeepaliveInterval >= 1 s: a probe's answer has a round trip on a bad link to arrive",
			NodeKeepaliveInterval >= time.Second},
	} {
		if !tc.ok {
			t.Errorf("want %s (idle %v, interval %v, count %d, ping %v)",
				tc.relation, NodeKeepaliveIdle, NodeKeepaliveInterval, NodeKeepaliveCount, StreamPing)
		}
	}
}

// TestRelayFrameSizes checks that a frame carries any packet the node's
// WireGuard sends or its socket receives.
func TestRelayFrameSizes(t *testing.T) {
	// maxUDPPayload is the largest UDP payload: IPv6's 16-bit payload
	// length less the UDP header (RFC 8200 §3, jumbograms aside); IPv4's
	// is 20 bytes smaller.
	const maxUDPPayload = 65535 - 8
	if MaxRelayPayload != device.MaxMessageSize {
		t.Errorf("MaxRelayPayload = %d, want device.MaxMessageSize %d", MaxRelayPayload, device.MaxMessageSize)
	}
	if MaxRelayPayload < maxUDPPayload {
		t.Errorf("MaxRelayPayload = %d is below the largest UDP payload %d: a relayed datagram would be cut", MaxRelayPayload, maxUDPPayload)
	}
	frame := AppendRelayData(nil, crypto.PublicKey{}, make([]byte, MaxRelayPayload))
	if len(frame) != MaxRelayFrame {
		t.Errorf("a data frame with the largest payload is %d bytes, MaxRelayFrame %d", len(frame), MaxRelayFrame)
	}
	f, err := ParseRelay(frame)
	if err != nil || len(f.Payload) != MaxRelayPayload {
		t.Errorf("ParseRelay of the largest frame: %d-byte payload, %v", len(f.Payload), err)
	}
}

// TestStreamMessageSizes checks that a node's largest stream message fits
// what the coordinator reads, and that the coordinator's messages passing it
// on fit what a node reads.
func TestStreamMessageSizes(t *testing.T) {
	key := crypto.PublicKey{}
	for i := range key {
		key[i] = 0xff
	}
	// The longest text of each field: a full IPv6 address and port, the
	// longest kind and NAT values, a name of a DNS label's 63 bytes, a
	// relay at a 253-byte DNS name.
	longestKind := ""
	for _, k := range []string{EndpointLAN, EndpointPortMap, EndpointSTUN, EndpointPredict, EndpointTCP} {
		if len(k) > len(longestKind) {
			longestKind = k
		}
	}
	ep := Endpoint{Addr: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Kind: longestKind}
	nat := NATInfo{Mapping: MappingAddressPortDependent, PortAlloc: PortAllocSequential, PortStep: 1 << 16}
	relay := strings.Repeat("a", 253) + ":65535"
	eps := func(n int) []Endpoint {
		out := make([]Endpoint, n)
		for i := range out {
			out[i] = ep
		}
		return out
	}
	size := func(m StreamMsg) int {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}

	endpoints := size(StreamMsg{Type: MsgEndpoints, Endpoints: eps(MaxEndpoints), NAT: &nat, Relay: relay,
		Software: &Software{Version: strings.Repeat("v", MaxSoftwareField), OS: strings.Repeat("o", MaxSoftwareField)}})
	if endpoints > MaxNodeMessage {
		t.Errorf("an endpoints message with %d endpoints is %d bytes, over MaxNodeMessage %d", MaxEndpoints, endpoints, MaxNodeMessage)
	}
	report := make([]PathEntry, MaxPathReportPeers)
	for i := range report {
		report[i] = PathEntry{Peer: key, Kind: PathRelayedUDP, Via: ViaRelayNode, Why: WhyHardNATs, RTT: MaxPathRTT}
	}
	paths := size(StreamMsg{Type: MsgPaths, Paths: AppendPathReport(nil, report), RelayKey: &key})
	if paths > MaxNodeMessage {
		t.Errorf("a paths message with %d entries is %d bytes, over MaxNodeMessage %d", MaxPathReportPeers, paths, MaxNodeMessage)
	}
	// The coordinator passes a node's endpoints on with one of its own
	// (EndpointTCP) in a punch or a peers delta.
	node := Node{Name: strings.Repeat("n", 63), PublicKey: key, Endpoints: eps(MaxEndpoints + 1), NAT: &nat, Relay: relay,
		Addresses: []netip.Addr{netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}}
	for _, m := range []StreamMsg{
		{Type: MsgPunch, Peer: &key, Endpoints: eps(MaxEndpoints + 1), NAT: &nat},
		{Type: MsgPeers, Upsert: []Node{node}, Version: 1<<64 - 1},
	} {
		if n := size(m); n > MaxCoordinatorMessage {
			t.Errorf("a %s message about one node is %d bytes, over MaxCoordinatorMessage %d", m.Type, n, MaxCoordinatorMessage)
		}
	}
}

// TestRelayHealthTiming checks that both ends of a failing relayed pair
// report within the coordinator's window, and that a node's reports fit
// the coordinator's budget.
func TestRelayHealthTiming(t *testing.T) {
	round := RelayCheckMisses * RelayCheck
	for _, tc := range []struct {
		relation string
		ok       bool
	}{
		{"RelayReportWindow >= 2 rounds of misses: a peer's report repeated once still meets the first",
			RelayReportWindow >= 2*round},
		{"RelayCheck < RelayRefresh: a check refreshes the binding, so the relay shows itself alive in every check",
			RelayCheck < RelayRefresh},
		{"RelayReportEvery <= RelayCheck: a verdict is reported the check it is reached",
			RelayReportEvery <= RelayCheck},
		{"RelayReportBurst >= 1",
			RelayReportBurst >= 1},
	} {
		if !tc.ok {
			t.Errorf("want %s (check %v, misses %d, window %v, report every %v burst %d)",
				tc.relation, RelayCheck, RelayCheckMisses, RelayReportWindow, RelayReportEvery, RelayReportBurst)
		}
	}
}

func TestSoftwareCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Software
		want string // part of the error; empty: accepted
	}{
		{"release", Software{Version: "v1.2.3", OS: "linux/amd64"}, ""},
		{"dev build", Software{Version: "dev", OS: "darwin/arm64"}, ""},
		{"nothing reported", Software{}, ""},
		{"longest version", Software{Version: strings.Repeat("v", MaxSoftwareField)}, ""},
		{"version too long", Software{Version: strings.Repeat("v", MaxSoftwareField+1)}, "software version is 65 bytes; at most 64"},
		{"os too long", Software{OS: strings.Repeat("o", 1<<10)}, "software os is 1024 bytes"},
		{"newline", Software{Version: "v1\nforged log line"}, "byte 2 (0x0a) is not printable ASCII"},
		{"terminal escape", Software{OS: "\x1b[2Jlinux"}, "software os"},
		{"DEL", Software{Version: "v1\x7f"}, "0x7f"},
		{"NUL", Software{Version: "\x00"}, "byte 0 (0x00)"},
		{"right-to-left override", Software{Version: "v1\u202e"}, "not printable ASCII"},
		{"invalid UTF-8", Software{OS: "linux\xff"}, "0xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
