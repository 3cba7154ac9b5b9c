package wire

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// A path report (MsgPaths, node → coordinator) tells the coordinator how
// the node reaches each peer it has a path state for. It travels in
// StreamMsg.Paths as packed entries, a few bytes per peer, so a node with
// MaxPathReportPeers peers stays within MaxNodeMessage:
//
//	peer key (32) | kind (1) | relay (1) | why (1) | RTT (2, big endian)
//
// Entries are in no particular order; a peer appears at most once. The
// relay node a ViaRelayNode entry went through is StreamMsg.RelayKey (a node
// uses one relay node at a time).

// PathKind is how a node reaches a peer.
type PathKind byte

// Path kinds. The names are the label values of the node's and the
// coordinator's metrics (meshnode_node_peers, meshnode_coordinator_path_pairs).
const (
	PathNone       PathKind = 1 // no path: the peer is offline or unreachable
	PathDirectUDP  PathKind = 2
	PathDirectTCP  PathKind = 3 // a punched TCP connection
	PathRelayedUDP PathKind = 4 // through a UDP relay
	PathRelayedTCP PathKind = 5 // through the coordinator's TCP relay
)

// PathKinds lists every kind, in order.
var PathKinds = []PathKind{PathNone, PathDirectUDP, PathDirectTCP, PathRelayedUDP, PathRelayedTCP}

// pathKindNames are the kinds' names, by value.
var pathKindNames = map[PathKind]string{
	PathNone: "none", PathDirectUDP: "direct_udp", PathDirectTCP: "direct_tcp",
	PathRelayedUDP: "relayed_udp", PathRelayedTCP: "relayed_tcp",
}

func (k PathKind) String() string { return name(pathKindNames, k, "kind") }

// name is v's name in names, or its number.
func name[T ~byte](names map[T]string, v T, what string) string {
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("%s(%d)", what, byte(v))
}

// Relayed reports a path through a relay.
func (k PathKind) Relayed() bool { return k == PathRelayedUDP || k == PathRelayedTCP }

// PathVia says which relay a relayed path goes through.
type PathVia byte

// Relays of a path.
const (
	ViaNone        PathVia = 0 // not relayed
	ViaCoordinator PathVia = 1 // the coordinator's relay
	ViaRelayNode   PathVia = 2 // the relay node StreamMsg.RelayKey
)

// RelayWhy is the node's best knowledge of why a path is relayed.
type RelayWhy byte

// Reasons a path is relayed. The names are the label values of the
// coordinator's meshnode_coordinator_relayed_pairs.
const (
	WhyUnknown RelayWhy = 0 // not relayed, or still punching
	// WhyNoCandidates: the peer reported no address this node may punch.
	WhyNoCandidates RelayWhy = 1
	// WhyUDPBlocked: this node's STUN requests go unanswered, so no
	// direct UDP path can open from here.
	WhyUDPBlocked RelayWhy = 2
	// WhyHardNATs: both NATs map endpoint-dependently (RFC 4787 §4.1,
	// "symmetric") with unpredictable ports: punching can't meet.
	WhyHardNATs RelayWhy = 3
	// WhyPunchFailed: punching was tried and no direct path answered.
	WhyPunchFailed RelayWhy = 4
)

// RelayWhys lists every reason, in order.
var RelayWhys = []RelayWhy{WhyUnknown, WhyNoCandidates, WhyUDPBlocked, WhyHardNATs, WhyPunchFailed}

// relayWhyNames are the reasons' names, by value.
var relayWhyNames = map[RelayWhy]string{
	WhyUnknown: "unknown", WhyNoCandidates: "no_candidates", WhyUDPBlocked: "udp_blocked",
	WhyHardNATs: "hard_nats", WhyPunchFailed: "punch_failed",
}

func (w RelayWhy) String() string { return name(relayWhyNames, w, "why") }

// PathEntry is one peer's path in a report.
type PathEntry struct {
	Peer crypto.PublicKey
	Kind PathKind
	Via  PathVia  // ViaNone unless Kind is relayed
	Why  RelayWhy // WhyUnknown unless Kind is relayed
	// RTT is the path's smoothed round trip, in PathRTTUnit steps up to
	// MaxPathRTT; 0 when unmeasured.
	RTT time.Duration
}

// Path report bounds and timing.
const (
	// PathEntryLen is one packed entry's size.
	PathEntryLen = crypto.KeyLen + 1 + 1 + 1 + 2
	// MaxPathReportPeers bounds the entries of one report; a node with
	// more peers reports those with a path first (node/pathreport.go).
	// The coordinator refuses a longer report.
	MaxPathReportPeers = 1024
	// PathRTTUnit is the resolution of a reported RTT, and MaxPathRTT
	// the largest one (longer ones are reported as it).
	PathRTTUnit = 100 * time.Microsecond
	MaxPathRTT  = 65535 * PathRTTUnit
	// PathReportGap is the least time between two reports of a node: a
	// change waits for it. PathReportEvery spaces reports whose only
	// change is an RTT. The coordinator allows PathReportBurst reports,
	// then one per PathReportGap, and drops the rest.
	PathReportGap   = 5 * time.Second
	PathReportEvery = 30 * time.Second
	PathReportBurst = 3
)

// AppendPathReport packs entries. Entries the format can't carry (an
// unknown kind, relay or reason, a relay or reason on a path that isn't
// relayed) are a programming error: ParsePathReport would refuse them.
func AppendPathReport(dst []byte, entries []PathEntry) []byte {
	for _, e := range entries {
		dst = append(dst, e.Peer[:]...)
		dst = append(dst, byte(e.Kind), byte(e.Via), byte(e.Why))
		dst = binary.BigEndian.AppendUint16(dst, uint16(min(max(e.RTT, 0), MaxPathRTT)/PathRTTUnit))
	}
	return dst
}

// ParsePathReport unpacks a report and checks every entry: a known kind,
// relay and reason, a relay exactly on relayed paths, a reason only on
// them, each peer once, at most MaxPathReportPeers entries.
func ParsePathReport(b []byte) ([]PathEntry, error) {
	if len(b)%PathEntryLen != 0 {
		return nil, fmt.Errorf("path report: %d bytes is not a whole number of %d-byte entries", len(b), PathEntryLen)
	}
	n := len(b) / PathEntryLen
	if n > MaxPathReportPeers {
		return nil, fmt.Errorf("path report: %d entries; at most %d", n, MaxPathReportPeers)
	}
	out := make([]PathEntry, 0, n)
	seen := make(map[crypto.PublicKey]struct{}, n)
	for i := 0; i < n; i++ {
		r := b[i*PathEntryLen : (i+1)*PathEntryLen]
		e := PathEntry{
			Peer: crypto.PublicKey(r[:crypto.KeyLen]),
			Kind: PathKind(r[crypto.KeyLen]),
			Via:  PathVia(r[crypto.KeyLen+1]),
			Why:  RelayWhy(r[crypto.KeyLen+2]),
			RTT:  time.Duration(binary.BigEndian.Uint16(r[crypto.KeyLen+3:])) * PathRTTUnit,
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("path report: entry %d (peer %s): %w", i, e.Peer.Short(), err)
		}
		if _, dup := seen[e.Peer]; dup {
			return nil, fmt.Errorf("path report: peer %s appears twice", e.Peer.Short())
		}
		seen[e.Peer] = struct{}{}
		out = append(out, e)
	}
	return out, nil
}

func (e PathEntry) check() error {
	if e.Kind < PathNone || e.Kind > PathRelayedTCP {
		return fmt.Errorf("unknown path kind %d", byte(e.Kind))
	}
	if e.Why > WhyPunchFailed {
		return fmt.Errorf("unknown relay reason %d", byte(e.Why))
	}
	switch {
	case e.Kind.Relayed() && e.Via != ViaCoordinator && e.Via != ViaRelayNode:
		return fmt.Errorf("relayed path (%s) with relay %d; want %d (coordinator) or %d (relay node)", e.Kind, e.Via, ViaCoordinator, ViaRelayNode)
	case !e.Kind.Relayed() && (e.Via != ViaNone || e.Why != WhyUnknown):
		return fmt.Errorf("path %s carries relay %d and reason %s; only relayed paths do", e.Kind, e.Via, e.Why)
	}
	return nil
}
