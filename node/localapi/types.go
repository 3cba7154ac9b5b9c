// Package localapi is the node's control socket: `meshnode status`, `ping`
// and `down` talk to the running node through it, as HTTP over a Unix socket
// that only root (or a configured group) may open.
package localapi

import (
	"net/netip"

	"github.com/meshnode/meshnode/internal/wire"
)

// Paths served on the socket.
const (
	PathStatus = "/v1/status"
	PathPing   = "/v1/ping"
	PathDown   = "/v1/down"
	PathPrefs  = "/v1/prefs"
)

// Status is `meshnode status --json`: a stable interface for scripts.
type Status struct {
	Self        Self        `json:"self"`
	Peers       []Peer      `json:"peers"`
	Coordinator Coordinator `json:"coordinator"`
	// Routes is what this node routes beyond the overlay, as a router and
	// through its peers.
	Routes Routes `json:"routes"`
	// ExitNode is the exit node this node's internet traffic goes through;
	// nil when it goes direct.
	ExitNode *ExitNode `json:"exit_node,omitempty"`
	// DNS is the resolver of the mesh's names (`meshnode dns status`).
	DNS DNS `json:"dns"`
	// Counters are what the node dropped and why: garbage on the UDP port,
	// WireGuard from unknown sources, sends with no path, rejected
	// (forged, replayed or malformed) discovery messages, packets the
	// access policy denied.
	Counters map[string]uint64 `json:"counters"`
	// Policy is the access policy this node enforces.
	Policy Policy `json:"policy"`
}

// Policy is the access policy this node enforces on what it sends and
// receives, and what it denied.
type Policy struct {
	// Active: a policy is in force. False: none is set, and every member
	// reaches every other.
	Active  bool   `json:"active"`
	Version uint64 `json:"version"`
	Rules   int    `json:"rules"`
	// Flows are the connections tracked (their replies pass), at most
	// MaxFlows.
	Flows    int `json:"flows"`
	MaxFlows int `json:"max_flows"`
	// Denied counts the packets denied against each rule of the policy in
	// force (the first rule whose addresses cover a packet its protocol or
	// ports don't allow), in the policy's order; DeniedNoRule those whose
	// addresses no rule covers.
	Denied       []RuleDenied `json:"denied"`
	DeniedNoRule RuleDenied   `json:"denied_no_rule"`
}

// RuleDenied counts the packets denied against one rule: In from peers,
// Out from this host.
type RuleDenied struct {
	Rule string `json:"rule,omitempty"`
	In   uint64 `json:"in"`
	Out  uint64 `json:"out"`
}

// Self describes this node.
type Self struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
	PublicKey string       `json:"public_key"`
	Endpoints []string     `json:"endpoints"`
	Interface string       `json:"interface"`
	NAT       NAT          `json:"nat"`
	// Tags are this node's tags as the coordinator last sent them.
	Tags []string `json:"tags,omitempty"`
	// Relay is the address this node serves as the mesh's relay at:
	// relay_public while the administrator designates it (tag relay),
	// else empty.
	Relay string `json:"relay,omitempty"`
}

// NAT is what this node learned of its NAT.
type NAT struct {
	Mapping   wire.NATMapping     `json:"mapping"`
	PortAlloc wire.PortAllocation `json:"port_allocation"`
	Public    string              `json:"public_address"`
	// Public6 is the address IPv6 STUN saw, and Mapping6 its NAT: usually
	// "none", a global address behind a firewall.
	Public6  string          `json:"public_address_v6,omitempty"`
	Mapping6 wire.NATMapping `json:"mapping_v6,omitempty"`
	// Filtering is the NAT's (or, without one, a firewall's) filtering
	// behaviour, measured once per network; "" until measured.
	Filtering wire.NATFiltering `json:"filtering,omitempty"`
	// MappingLifetime is the longest silence an idle mapping was measured
	// to outlive ("" until measured, or when it outlived none of the
	// probes); IdleKeepalive is the heartbeat interval of idle paths that
	// follows from it (Go duration strings).
	MappingLifetime string `json:"mapping_lifetime"`
	IdleKeepalive   string `json:"idle_keepalive"`
}

// Coordinator is the control connection's state.
type Coordinator struct {
	// URL is the coordinator the stream is connected to, or while it is
	// down the one it used last.
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	// Known is how many coordinators of the mesh the node knows (its
	// token's, then each welcome's): it fails over among them.
	Known int `json:"known"`
	// CachedMap is set while the node runs from its cached peer map: it
	// came up while no coordinator answered, and none has since.
	CachedMap *CachedMap `json:"cached_map,omitempty"`
}

// CachedMap says which cached peer map the node runs from (RFC 3339 times,
// UTC).
type CachedMap struct {
	// Since is when the node started running from it.
	Since string `json:"since"`
	// Updated is when the coordinator last changed the map: how old it is.
	Updated string `json:"updated"`
	// File is the cache's path.
	File string `json:"file"`
}

// DNS is the resolver's state.
type DNS struct {
	// Enabled is accept_dns: the node runs a resolver.
	Enabled bool   `json:"enabled"`
	Domain  string `json:"domain,omitempty"`
	// Listen are the addresses (ip:port) the resolver answers on, UDP and
	// TCP; ListenError names those it could not open.
	Listen      []string `json:"listen,omitempty"`
	ListenError string   `json:"listen_error,omitempty"`
	// OS is how the OS is pointed at the resolver: systemd-resolved,
	// /etc/resolver (macOS), resolv.conf (dns: manage-resolv-conf) or
	// none; OSNote says why none, or what went wrong.
	OS     string `json:"os"`
	OSNote string `json:"os_note,omitempty"`
	// Upstreams are the machine's resolvers, which the resolver forwards
	// every other name to.
	Upstreams []string    `json:"upstreams,omitempty"`
	Records   []DNSRecord `json:"records,omitempty"`
	// Counters are the resolver's: queries, answered, nxdomain,
	// forwarded, servfail, truncated, rate_limited, refused_source,
	// malformed.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// DNSRecord is one name the resolver answers.
type DNSRecord struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
	Kind      string       `json:"kind"` // self, peer or extra (the administrator's dns_records)
}

// Peer describes one peer.
type Peer struct {
	Name          string       `json:"name"`
	Addresses     []netip.Addr `json:"addresses"`
	PublicKey     string       `json:"public_key"`
	Online        bool         `json:"online"`
	Path          string       `json:"path"`       // "direct", "relay" or "none"
	Endpoint      string       `json:"endpoint"`   // ip:port in use; empty when none
	Candidates    int          `json:"candidates"` // addresses this node may punch; 0: relay only
	LatencyMs     float64      `json:"latency_ms"`
	MTU           int          `json:"mtu"`      // the largest inner packet the path carries whole: searched on a direct path, the relay's fit (1376) through the UDP relay; 0: not known yet, or over TCP
	PathMTU       int          `json:"path_mtu"` // the underlay packet that carries it (mtu + 60 over IPv4, + 80 over IPv6, and the relay header's 37 through the relay)
	RxBytes       uint64       `json:"rx_bytes"`
	TxBytes       uint64       `json:"tx_bytes"`
	LastHandshake string       `json:"last_handshake"` // RFC 3339; empty before the first
	// Routes are the subnet routes this node sends through the peer (it
	// is their primary router); ExitNodeOption: it is an approved exit
	// node this node may choose.
	Routes         []netip.Prefix `json:"routes,omitempty"`
	ExitNodeOption bool           `json:"exit_node_option,omitempty"`
	// RoutesDenied are those of Routes into which the access policy lets
	// this node open no connection: it routes them through the peer, whose
	// filter drops what it sends.
	RoutesDenied []netip.Prefix `json:"routes_denied,omitempty"`
	// Reach: the access policy lets this node open connections to the
	// peer (on some protocol and port); ReachedBy: the peer to this node.
	// Both true when no policy is in force.
	Reach     bool `json:"reach"`
	ReachedBy bool `json:"reached_by"`
}

// Routes is what a node routes beyond the overlay.
type Routes struct {
	// Advertised are the routes this node advertises; Serving those the
	// administrator approved, which it forwards to; Primary those its
	// peers send through it.
	Advertised []netip.Prefix `json:"advertised"`
	Serving    []netip.Prefix `json:"serving"`
	Primary    []netip.Prefix `json:"primary"`
	// GatewayError is why forwarding to the served routes isn't set up
	// (IP forwarding off and not allowed to turn it on, no nftables).
	GatewayError string `json:"gateway_error,omitempty"`
	// Via are the peers' subnet routes as this node uses them.
	Via []PeerRoute `json:"via"`
	// OSError is why the OS routes aren't as they should be.
	OSError string `json:"os_error,omitempty"`
}

// Ways a node uses a peer's subnet route (PeerRoute.State).
const (
	RouteRouted = "routed" // through the peer
	RouteLAN    = "lan"    // not installed: it lies in this host's LAN, which keeps its traffic
	RouteOwn    = "own"    // this node advertises it too and reaches it directly
)

// PeerRoute is one of a peer's subnet routes.
type PeerRoute struct {
	Prefix netip.Prefix `json:"prefix"`
	Peer   string       `json:"peer"`
	State  string       `json:"state"`
	LAN    string       `json:"lan,omitempty"` // with RouteLAN, the LAN prefix
}

// Exit node states (ExitNode.State). Only ExitReachable carries traffic;
// in every other, internet traffic is blocked, never sent directly.
const (
	ExitReachable   = "reachable"
	ExitUnknown     = "unknown"      // no peer has the name
	ExitNotApproved = "not approved" // the peer serves no exit routes
	ExitOffline     = "offline"
	ExitNoPath      = "no path" // online, but no path to it yet
)

// ExitNode is the exit node in use.
type ExitNode struct {
	Name      string `json:"name"`
	AllowLAN  bool   `json:"allow_lan_access"`
	Reachable bool   `json:"reachable"`
	State     string `json:"state"`
}

// PrefsRequest changes the user's choices at run time (`meshnode set`);
// a nil field stays as it is.
type PrefsRequest struct {
	ExitNode *string `json:"exit_node,omitempty"`
	AllowLAN *bool   `json:"exit_node_allow_lan_access,omitempty"`
}

// Prefs are the user's choices.
type Prefs struct {
	ExitNode string `json:"exit_node"`
	AllowLAN bool   `json:"exit_node_allow_lan_access"`
}

// PingRequest asks for one discovery ping.
type PingRequest struct {
	Peer string `json:"peer"` // a name, an overlay address or a public key
}

// PingReply is one answered ping.
type PingReply struct {
	Peer      string  `json:"peer"`
	Path      string  `json:"path"`
	Endpoint  string  `json:"endpoint"`
	LatencyMs float64 `json:"latency_ms"`
}

// ErrorReply is the body of a failed request.
type ErrorReply struct {
	Error string `json:"error"`
}
