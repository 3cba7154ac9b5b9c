// Package wire holds meshnode's wire formats: the control API between nodes
// and the coordinator (JSON over HTTPS and a WebSocket stream), and the UDP
// packet formats that share the WireGuard socket (discovery, relay).
package wire

import (
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// Control API paths, served over HTTPS by the coordinator.
const (
	// PathRegisterChallenge answers GET with a RegisterChallenge, the
	// first step of a registration.
	PathRegisterChallenge = "/api/v1/register/challenge"
	PathRegister          = "/api/v1/register"
	PathStream            = "/api/v1/stream" // WebSocket upgrade
	PathRelay             = "/api/v1/relay"  // WebSocket upgrade: relay frames over TCP/TLS
	// PathMetrics is where the coordinator's metrics listener (metrics_listen,
	// loopback by default, never the public port) serves Prometheus metrics.
	PathMetrics = "/metrics"
)

// MaxRequestBody bounds what the coordinator reads from one request; larger
// bodies get 413.
const MaxRequestBody = 64 << 10

// RegisterChallenge is the coordinator's challenge for a registration, and
// the key the node proves its own to.
type RegisterChallenge struct {
	Challenge      []byte           `json:"challenge"`
	CoordinatorKey crypto.PublicKey `json:"coordinator_key"`
}

// RegisterProofLabel separates registration proofs from the stream's and
// the relay's: a proof made for one can't be presented to another.
const RegisterProofLabel = "register"

// RegisterRequest is what a node sends with its join token. Challenge is a
// RegisterChallenge's, fetched just before, and Proof is
// crypto.Proof(nodePriv, CoordinatorKey, RegisterProofLabel, Challenge): it
// shows the node holds the private key of the key it registers.
type RegisterRequest struct {
	Token     string           `json:"token"` // the full join token string
	PublicKey crypto.PublicKey `json:"public_key"`
	Name      string           `json:"name"`
	Challenge []byte           `json:"challenge,omitempty"`
	Proof     []byte           `json:"proof,omitempty"`
}

// RegisterResponse answers a successful registration.
type RegisterResponse struct {
	Self           Node             `json:"self"`
	CoordinatorKey crypto.PublicKey `json:"coordinator_key"` // for stream auth and relay hello
	NetworkV4      netip.Prefix     `json:"network_v4"`
	NetworkV6      netip.Prefix     `json:"network_v6"`
}

// Error codes in ErrorResponse, so a node can tell the user exactly which
// problem its token has.
const (
	ErrCodeBadRequest   = "bad_request"
	ErrCodeTokenUnknown = "token_unknown"
	ErrCodeTokenExpired = "token_expired"
	ErrCodeTokenUsed    = "token_used"
	ErrCodeTokenRevoked = "token_revoked"
	ErrCodeNodeRemoved  = "node_removed"
	ErrCodePoolFull     = "pool_exhausted"
	ErrCodeUnauthorized = "unauthorized"
	ErrCodeInternal     = "internal"
	// ErrCodeChallengeExpired refuses a registration whose challenge is
	// too old or from an earlier run of the coordinator: fetch a new one
	// and register again at once.
	ErrCodeChallengeExpired = "challenge_expired"
	// ErrCodeRateLimited refuses a registration from a source that failed
	// too many (a stranger guessing tokens, or a node behind the same
	// address): nothing was checked; retry after Retry-After seconds.
	ErrCodeRateLimited = "rate_limited"
)

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Endpoint kinds, in the order a path manager prefers them.
const (
	EndpointLAN = "lan" // a private local interface address (RFC 1918, RFC 4193, RFC 6598)
	// EndpointPublic is a local interface address that is public
	// (PublicAddr): no NAT in front of it, at most a stateful firewall,
	// as with most homes' global IPv6 (RFC 6092). Both sides' first
	// punches open the firewalls, so it is direct at once.
	EndpointPublic  = "public"
	EndpointPortMap = "portmap" // a NAT-PMP/PCP/UPnP mapping
	EndpointSTUN    = "stun"    // the reflexive address STUN saw
	EndpointPredict = "predict" // a predicted port of a sequential symmetric NAT
	// EndpointTCP is the node's public TCP mapping as the coordinator saw
	// its stream arrive: the target of TCP hole punching.
	EndpointTCP = "tcp"
)

// Endpoint is one candidate address where a node may be reached.
type Endpoint struct {
	Addr netip.AddrPort `json:"addr"`
	Kind string         `json:"kind"`
}

// TagRelay is the tag by which the administrator designates a node as a
// relay for the mesh: only a node holding it is offered to peers as one
// (and, seeing it on itself in the welcome, binds to its own relay).
const TagRelay = "relay"

// Node is one member of the mesh as the coordinator describes it.
type Node struct {
	Name      string           `json:"name"`
	PublicKey crypto.PublicKey `json:"public_key"`
	Addresses []netip.Addr     `json:"addresses"` // overlay IPv4 then IPv6
	Endpoints []Endpoint       `json:"endpoints,omitempty"`
	NAT       *NATInfo         `json:"nat,omitempty"`
	Online    bool             `json:"online"`
	LastSeen  time.Time        `json:"last_seen,omitzero"`
	Tags      []string         `json:"tags,omitempty"`
	// Relay is the UDP relay this node serves (host:port), when it is
	// configured as one; its key is the node's PublicKey.
	Relay string `json:"relay,omitempty"`
	// RelaySuspendedUntil is set while the coordinator has suspended this
	// node's designation as a relay (a node reported that it did not carry
	// its traffic): meanwhile Relay is empty, so nobody uses it, and the
	// node itself stops counting itself a relay.
	RelaySuspendedUntil time.Time `json:"relay_suspended_until,omitzero"`
	// Routes are the subnet routes this node serves: those it advertises
	// that the administrator approved, the exit routes among them when it
	// is an approved exit node. It forwards traffic from the overlay to
	// them, and to nothing else.
	Routes []netip.Prefix `json:"routes,omitempty"`
	// PrimaryRoutes are the Routes peers send through this node: of the
	// nodes serving one prefix, the coordinator makes one primary (the one
	// it made primary before, while online; else the online one approved
	// first), so WireGuard, which routes a prefix to one peer, sends it
	// there. The exit routes are never among them: a peer uses the exit
	// node its user chose.
	PrimaryRoutes []netip.Prefix `json:"primary_routes,omitempty"`
}

// NATInfo is what a node learned of its own NAT (RFC 4787 terms), shared so
// that peers can choose a traversal technique.
type NATInfo struct {
	Mapping   NATMapping     `json:"mapping"`
	PortAlloc PortAllocation `json:"portalloc"`
	PortStep  int            `json:"port_step,omitempty"`
	// Filtering is the node's own measurement, for the node table; empty
	// until measured.
	Filtering NATFiltering `json:"filtering,omitempty"`
}

// Stream message types. The coordinator speaks first (challenge); the node
// answers with auth; then the coordinator sends the whole map once (welcome)
// and deltas after it.
const (
	MsgChallenge  = "challenge"  // coord → node: Challenge
	MsgAuth       = "auth"       // node → coord: PublicKey, Proof; Holds, the map it holds, if any
	MsgWelcome    = "welcome"    // coord → node: Self, Peers (the full map), Version, Epoch, DNS; or, Resumed, Upsert and Remove since Holds
	MsgPeers      = "peers"      // coord → node: Upsert, Remove (a delta), Version; Self when the node's own record changed (its tags, its relay's suspension); Coordinators when they changed
	MsgEndpoints  = "endpoints"  // node → coord: Endpoints, NAT (its current candidates), Routes (the routes it advertises), Software
	MsgRendezvous = "rendezvous" // node → coord: Peer (asks to reach it)
	MsgPunch      = "punch"      // coord → node: Peer, Endpoints, NAT (punch now)
	MsgError      = "error"      // either way: Code, Error; the sender then closes
	// MsgRelayReport (node → coord: RelayKey, and Peer when the evidence
	// is that peer's) says the relay node RelayKey did not carry this
	// node's traffic. Without Peer: frames this node addressed to itself
	// through the relay did not come back while the relay confirmed its
	// binding, or the relay went silent while another answered. With
	// Peer: relayed pings to that online peer went unanswered while the
	// relay confirmed the binding; the coordinator acts on it only when
	// the peer says the same of this node.
	MsgRelayReport = "relay_report"
	// MsgPaths (node → coord: Paths, and RelayKey when a path goes through
	// a relay node) is the node's path to each peer (pathreport.go): sent
	// on change, at most every PathReportGap, never on the data path.
	MsgPaths = "paths"
)

// MeshRelay is one coordinator's UDP relay as the nodes of every other
// coordinator reach it: the key it verifies relay proofs with (that
// coordinator's static key) and its addresses, host:port ("" for none);
// and the coordinator's HTTPS URL and certificate pin, for its TCP relay
// (PathRelay).
type MeshRelay struct {
	Key   crypto.PublicKey `json:"key"`
	Addr  string           `json:"addr,omitempty"`
	Addr6 string           `json:"addr6,omitempty"`
	URL   string           `json:"url,omitempty"`
	Pin   string           `json:"pin,omitempty"`
}

// MapVersion names a peer map a node holds: the coordinator's map
// epoch (StreamMsg.Epoch, a random number a coordinator process draws at
// start: versions count its own changes and mean nothing to another
// process) and the version of the last welcome or delta the node
// applied.
type MapVersion struct {
	Epoch   uint64 `json:"epoch"`
	Version uint64 `json:"version"`
}

// ProofLabel separates stream authentication proofs from other uses.
const ProofLabel = "stream"

// StreamMsg is one JSON message on the stream; Type says which fields apply.
type StreamMsg struct {
	Type      string             `json:"type"`
	Challenge []byte             `json:"challenge,omitempty"`
	PublicKey *crypto.PublicKey  `json:"public_key,omitempty"`
	Proof     []byte             `json:"proof,omitempty"`
	Self      *Node              `json:"self,omitempty"` // welcome: this node's record; peers: its new record, when the administrator changed it (tags)
	Peers     []Node             `json:"peers,omitempty"`
	Upsert    []Node             `json:"upsert,omitempty"`
	Remove    []crypto.PublicKey `json:"remove,omitempty"`
	Version   uint64             `json:"version,omitempty"`
	Endpoints []Endpoint         `json:"endpoints,omitempty"`
	NAT       *NATInfo           `json:"nat,omitempty"`
	Peer      *crypto.PublicKey  `json:"peer,omitempty"`
	Relay     string             `json:"relay,omitempty"`     // welcome: the coordinator's UDP relay host:port; endpoints: the relay this node serves
	RelayKey  *crypto.PublicKey  `json:"relay_key,omitempty"` // relay_report: the relay node that did not carry; paths: the relay node RelayNode entries go through
	STUN      []string           `json:"stun,omitempty"`      // welcome: STUN host:port, primary first
	STUN6     []string           `json:"stun6,omitempty"`     // welcome: IPv6 STUN [IP]:port (stun_listen_v6), gathered besides STUN
	Relay6    string             `json:"relay6,omitempty"`    // welcome: the coordinator's UDP relay over IPv6, for nodes that can't reach Relay
	Filter    *Filter            `json:"filter,omitempty"`    // welcome: the access policy compiled for this node (nil: none); peers: its new one, when it changed
	// RelayPairs, to a designated relay node: welcome: which nodes may
	// see each other (nil: every pair); peers: the new ones, when they
	// changed.
	RelayPairs *RelayPairs    `json:"relay_pairs,omitempty"`
	Routes     []netip.Prefix `json:"routes,omitempty"` // endpoints: the subnet and exit routes this node advertises (CheckRoutes), served once approved
	DNS        *DNSConfig     `json:"dns,omitempty"`    // welcome: the mesh's DNS domain and extra records (nil: DefaultDNSDomain, none)
	Paths      []byte         `json:"paths,omitempty"`  // paths: packed PathEntry values (AppendPathReport)
	// Coordinators, in a welcome, and in peers when they changed: the
	// mesh's coordinators, each with the pin of its own certificate, the
	// sender first (nil: the node keeps the list it has). A node whose
	// stream fails reconnects to another.
	Coordinators []crypto.Coordinator `json:"coordinators,omitempty"`
	// Software, with endpoints: the node's version and OS (Software.Check),
	// for the administrator's view only.
	Software *Software `json:"software,omitempty"`
	Code     string    `json:"code,omitempty"`
	Error    string    `json:"error,omitempty"`
	// MeshRelay, where several coordinators serve the mesh: welcome: the
	// coordinator's relay every node binds to when no relay node is
	// offered (nil: this coordinator's, Relay and Relay6); peers: the new
	// one, when it changed.
	MeshRelay *MeshRelay `json:"mesh_relay,omitempty"`
	// Epoch, in a welcome: the coordinator's map epoch, for the node's
	// Holds when it reconnects (0: the coordinator can't resume).
	Epoch uint64 `json:"epoch,omitempty"`
	// Holds, in auth: the map the node holds, so that the coordinator
	// may send only what changed since (nil: none; a coordinator that
	// can't resume from it sends the full map).
	Holds *MapVersion `json:"holds,omitempty"`
	// Resumed, in a welcome: Peers is absent, and Upsert and Remove
	// bring the map named in the auth's Holds up to Version; the rest of
	// the welcome is whole.
	Resumed bool `json:"resumed,omitempty"`
}
