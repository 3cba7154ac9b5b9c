package wire

import (
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// This file holds the timings and sizes that two programs (or two
// packages) must agree on: a node and the relay, a node and the
// coordinator. Each side keeps its own name for them; limits_test.go checks
// the relations between them.

// UDP relay binding timing: node/relayclient keeps a binding, relay keeps
// the table of them.
const (
	// RelayRefresh is how often a bound node re-proves its binding (hello →
	// challenge → auth → ok). The refresh is also the keepalive of the NAT
	// mapping towards the relay, so it stays below the 20 s UDP idle
	// timeouts some NATs use.
	RelayRefresh = 10 * time.Second
	// MaxRelayRefresh bounds the refresh a node stretches to once it has
	// measured that its NAT keeps an idle mapping longer (80% of what the
	// mapping survived): an idle node's binding then costs two packets
	// every 45 s instead of every 10 s.
	MaxRelayRefresh = 45 * time.Second
	// RelayRetry re-sends a hello while unbound. The relay relies on it:
	// when its challenge table is full it forgets an arbitrary challenge,
	// and that node is back within RelayRetry.
	RelayRetry = time.Second
	// RelayExpiry is when a node withdraws its relay route after the last
	// OK: three refreshes, so two lost in a row don't withdraw it (with a
	// stretched refresh, three of those).
	RelayExpiry = 3 * RelayRefresh
	// RelayBindingIdle is when the relay forgets a UDP binding without
	// refresh or traffic. It must outlive the node's belief that it is
	// bound, or the relay drops the traffic of a node that still routes
	// through it: the node checks RelayExpiry only when a refresh is due,
	// so it may believe itself bound for four refreshes after its last OK
	// (expiry and the refresh that checks it), and the relay's clock starts
	// half a round trip before that OK: the longest refresh's four, and 5 s
	// for the round trip.
	RelayBindingIdle = 4*MaxRelayRefresh + 5*time.Second
)

// Relay frame sizes, for every transport that carries relay frames (the
// UDP relay, the WebSocket relay, punched TCP paths).
const (
	// MaxRelayPayload is the largest packet a frame carries: the largest
	// message wireguard-go sends, which on Linux and macOS is the largest
	// UDP datagram (device.MaxSegmentSize, 65535).
	MaxRelayPayload = device.MaxMessageSize
	// MaxRelayFrame is the largest relay frame: a data header and the
	// largest payload.
	MaxRelayFrame = RelayHeaderLen + MaxRelayPayload
)

// Control stream bounds: what each side reads of one message, and what a
// node may report.
const (
	// MaxNodeMessage is the coordinator's read limit for a message from a
	// node, which closes a stream that sends more. A node's largest message
	// is an endpoints list of MaxEndpoints.
	MaxNodeMessage = 64 << 10
	// MaxCoordinatorMessage is a node's read limit for a message from the
	// coordinator; the largest is a welcome, the whole map of the mesh.
	MaxCoordinatorMessage = 16 << 20
	// MaxEndpoints bounds the candidates a node reports: LAN addresses of
	// a few interfaces, a port mapping and its STUN mapping. The
	// coordinator refuses a longer list and closes the stream, so a node
	// must never send one.
	MaxEndpoints = 64
)

// Stream keepalive: only the node pings. An idle node's stream costs a ping
// and its pong (with the ACKs TCP adds) every StreamPing, instead of both
// ends pinging every 15 s: at 10,000 nodes the coordinator's packet rate
// is what idle nodes cost. Each ping costs about four packets from the node
// (the ping, ACKs, TCP's quick ACKs after an idle spell; measured in the
// lab). 60 s is far inside the shortest established-TCP timeouts of NATs
// (RFC 5382 REQ-5 asks for at least 2 h 4 min; carrier gateways of 5
// minutes exist).
const (
	StreamPing = time.Minute
	// StreamSilence is how long the coordinator waits without a message or
	// ping from a node before it drops the stream: two pings missed and
	// the second's time to arrive.
	StreamSilence = 2*StreamPing + 10*time.Second
	// TCPKeepalive is the kernel's keepalive on the coordinator's end of
	// the control and relay TCP connections: probes only after this long
	// idle. Go's default (15 s) would add four probes and their ACKs a
	// minute to every idle stream; the coordinator notices a silent node
	// by StreamSilence anyway.
	TCPKeepalive = 2 * time.Minute
	// StreamCheckTimeout bounds the ping of a check a peer asked for
	// (DiscoOffline): a coordinator that hung or whose host is gone
	// answers none, and a live one answers in a round trip, well inside.
	StreamCheckTimeout = 3 * time.Second
	// StreamCheckGap is the least time between two such checks, however
	// many peers ask: a peer's word costs this node at most one ping of
	// its coordinator per gap.
	StreamCheckGap = 10 * time.Second
)

// The node's end of its control and relay TCP connections notices a
// coordinator whose host is lost (a crashed machine or a cut link: no FIN
// or RST ever comes) from the kernel's keepalive: a probe after
// NodeKeepaliveIdle without a segment from the coordinator, then every
// NodeKeepaliveInterval, and the connection ends after NodeKeepaliveCount
// unanswered, at most NodeKeepaliveDeadline after the host went; the node
// then fails over to another coordinator. Without them it would notice
// at its next ping, up to StreamPing and the ping's timeout later (70 s).
// On Linux the deadline is also TCP_USER_TIMEOUT, so a message sent to a
// lost host (unacknowledged data, when keepalives don't run) fails as
// soon. The idle time is what an idle node can afford: a ping resets it,
// so between two pings (StreamPing) the stream idles long enough for one
// probe, and one probe and its ACK a minute keep an idle node within its
// budget of packets to the coordinator (e2e TestIdleQuiet: 10 a minute,
// issue "a quiet idle mesh"); 5 s cost 12 a minute and broke it. The
// probes are answered by the coordinator's kernel, not its process. Three
// probes lost in a row on a lossy link only reconnect the stream.
const (
	NodeKeepaliveIdle     = StreamPing / 2
	NodeKeepaliveInterval = time.Second
	NodeKeepaliveCount    = 3
	NodeKeepaliveDeadline = NodeKeepaliveIdle + NodeKeepaliveCount*NodeKeepaliveInterval
)

// Relay health: a node checks that the relay node it uses carries its
// traffic (node/relayclient, node/path) and reports one that doesn't; the
// coordinator suspends a reported relay for every node at once.
const (
	// RelayCheck spaces a node's checks of the relay node it uses: an
	// echo through it, a refresh of the binding, and relayed pings to a
	// few relayed peers. Each costs a handful of small packets.
	RelayCheck = 5 * time.Second
	// RelayCheckMisses is how many checks in a row must fail, with the
	// relay shown alive, before a node reports it: one or two lost
	// packets are no verdict.
	RelayCheckMisses = 3
	// RelayReportEvery and RelayReportBurst bound a node's relay reports:
	// a burst (several relayed peers failing at once), then one per
	// RelayReportEvery. The coordinator drops reports beyond the same
	// budget.
	RelayReportEvery = RelayCheck
	RelayReportBurst = 4
	// RelayReportWindow is how long the coordinator keeps a report that
	// names a peer, waiting for that peer's report naming the reporter.
	// A node that keeps missing reports again every
	// RelayCheckMisses*RelayCheck, so two such rounds fit in the window.
	RelayReportWindow = time.Minute
)
