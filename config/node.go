package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/tun"
)

// Node defaults, each with its reason.
const (
	// DefaultNodeConfigFile is read when --config is not given and it exists.
	DefaultNodeConfigFile = "/etc/meshnode/meshnode.yaml"
	// DefaultListenPort is fixed so firewall rules can name it; 0 picks one.
	DefaultListenPort = 41820
	// DefaultMTU and MinMTU are the TUN device's (see package tun).
	DefaultMTU = tun.DefaultMTU
	MinMTU     = tun.MinMTU
	// DefaultKeepalive keeps NAT mappings alive: below the 20 s idle timeout
	// seen on some home gateways and Linux conntrack's 30 s for unreplied UDP.
	DefaultKeepalive = 15 * time.Second
	// MinKeepalive bounds the heartbeat rate a config can ask for.
	MinKeepalive = time.Second
)

// Node is the node agent's settings (`meshnode up`).
type Node struct {
	Token       string        `mapstructure:"token" desc:"join token; needed on the first run only, later runs reuse state_dir (prefer token_file or MESHNODE_TOKEN: a --token flag is visible to every user)"`
	TokenFile   string        `mapstructure:"token_file" desc:"file holding the join token (mode 0600), instead of token"`
	StateDir    string        `mapstructure:"state_dir" desc:"where the node keeps its private key and registration"`
	Interface   string        `mapstructure:"interface" desc:"TUN device name (mesh0 on Linux; utun or utunN on macOS)"`
	Name        string        `mapstructure:"name" desc:"this node's name in the mesh (default: the host name); a DNS label"`
	ListenPort  int           `mapstructure:"listen_port" desc:"UDP port for WireGuard, STUN and discovery (0 picks a free one)"`
	Socket      string        `mapstructure:"socket" desc:"local control socket used by status, ping and down"`
	SocketGroup string        `mapstructure:"socket_group" desc:"group allowed to use the control socket (default: root only)"`
	MTU         int           `mapstructure:"mtu" desc:"TUN MTU: the largest packet to peers whose path carries it; peers behind smaller links are measured and fitted to theirs (1420 suits nearly everyone)"`
	TUNDriver   string        `mapstructure:"tun_driver" desc:"TUN driver: wireguard (offloads, fastest) or water (portable)"`
	Keepalive   time.Duration `mapstructure:"keepalive" desc:"interval of keepalives on each direct path; keep below your NAT's UDP idle timeout"`
	STUNServers []string      `mapstructure:"stun_servers" desc:"extra STUN servers (host:port) besides the coordinator"`
	PortMapping bool          `mapstructure:"port_mapping" desc:"ask the LAN gateway (NAT-PMP, PCP) to forward listen_port, for a port-mapped candidate"`
	TCPPunch    bool          `mapstructure:"tcp_punch" desc:"where UDP fails, try a direct TCP path (hole punching from TCP listen_port) before the relay"`
	RelayListen string        `mapstructure:"relay_listen" desc:"serve as the mesh's UDP relay on this host:port (a node with a public address); empty: off"`
	RelayPublic string        `mapstructure:"relay_public" desc:"the IP:port other nodes reach relay_listen at (needed with relay_listen); offered only if the administrator tagged this node relay"`
	// Subnet routes and exit nodes.
	AdvertiseRoutes        []string `mapstructure:"advertise_routes" desc:"LANs this node routes for the mesh (comma-separated prefixes, e.g. 192.168.10.0/24), once the administrator approves them; Linux only"`
	AdvertiseExitNode      bool     `mapstructure:"advertise_exit_node" desc:"offer this node as an exit node (it advertises 0.0.0.0/0 and ::/0), once the administrator approves; Linux only"`
	SNATSubnetRoutes       bool     `mapstructure:"snat_subnet_routes" desc:"masquerade traffic from the mesh to advertised routes as this node, so LAN hosts need no route back (false: keep overlay source addresses; the LAN must route the overlay to this node)"`
	ExitNode               string   `mapstructure:"exit_node" desc:"send this node's internet traffic through the peer of this name, an approved exit node (blocked while it is unreachable); empty: direct; Linux only"`
	ExitNodeAllowLANAccess bool     `mapstructure:"exit_node_allow_lan_access" desc:"with an exit node, keep this host's LANs reachable directly"`
	AcceptDNS              bool     `mapstructure:"accept_dns" desc:"answer the mesh's names (NAME.<domain>) with a resolver on this node's overlay addresses and point the OS at it for that domain; false: no resolver, the OS's DNS untouched"`
	DNS                    string   `mapstructure:"dns" desc:"how the OS is pointed at the resolver: split (systemd-resolved or /etc/resolver for the mesh's domain only; elsewhere nothing) or manage-resolv-conf (where split DNS is missing, /etc/resolv.conf points at the resolver while the node runs, restored when it stops)"`
	MetricsListen          string   `mapstructure:"metrics_listen" desc:"host:port serving Prometheus /metrics over plain HTTP without authentication: a loopback address (127.0.0.1:9480) or one address of this host given explicitly, never every interface; empty: off"`
	PeerMapCache           bool     `mapstructure:"peer_map_cache" desc:"keep the last peer map in state_dir (peermap.json, mode 0600) and come up from it when no coordinator answers; false: no cache (an existing one is removed)"`
	LogLevel               string   `mapstructure:"log_level" desc:"debug, info, warn or error"`
}

// DNS modes (the dns key).
const (
	// DNSSplit sends the OS only the mesh's domain, where the OS can route
	// one domain to one resolver (systemd-resolved, macOS /etc/resolver).
	DNSSplit = "split"
	// DNSManageResolvConf also points /etc/resolv.conf at the resolver
	// where split DNS is missing; the resolver forwards every other name
	// to the servers the file named.
	DNSManageResolvConf = "manage-resolv-conf"
)

// DefaultNode returns the node defaults for this OS.
func DefaultNode() Node {
	n := Node{
		StateDir:    "/var/lib/meshnode",
		Interface:   "mesh0",
		ListenPort:  DefaultListenPort,
		Socket:      "/run/meshnode/meshnode.sock",
		MTU:         DefaultMTU,
		TUNDriver:   "wireguard",
		Keepalive:   DefaultKeepalive,
		PortMapping: true,
		TCPPunch:    true,
		// Masquerading works on any LAN with nothing set up there.
		SNATSubnetRoutes: true,
		AcceptDNS:        true,
		DNS:              DNSSplit,
		// A node restarted during a coordinator outage reaches its peers.
		PeerMapCache: true,
		LogLevel:     "info",
	}
	if runtime.GOOS == "darwin" {
		n.Interface = "utun"
		n.Socket = "/var/run/meshnode.sock"
		n.StateDir = "/usr/local/var/lib/meshnode"
	}
	return n
}

// Validate checks every key and reports all problems at once.
func (n Node) Validate() error {
	var errs []error
	errs = append(errs,
		errIf(n.StateDir == "", "state_dir", "must not be empty"),
		errIf(n.Interface == "", "interface", "must not be empty"),
		errIf(n.ListenPort < 0 || n.ListenPort > 65535, "listen_port", "%d is out of range; use 0-65535", n.ListenPort),
		errIf(n.Socket == "", "socket", "must not be empty"),
		errIf(n.MTU < MinMTU || n.MTU > 9000, "mtu", "%d is out of range; use %d-9000 (1420 is right for most links)", n.MTU, MinMTU),
		oneOf("tun_driver", n.TUNDriver, "wireguard", "water"),
		errIf(n.Keepalive < MinKeepalive, "keepalive", "%v is too short; use at least %v", n.Keepalive, MinKeepalive),
		oneOf("log_level", n.LogLevel, "debug", "info", "warn", "error"),
		oneOf("dns", n.DNS, DNSSplit, DNSManageResolvConf),
	)
	if n.Name != "" {
		errs = append(errs, validName("name", n.Name))
	}
	if n.RelayListen != "" || n.RelayPublic != "" {
		errs = append(errs,
			errIf(n.RelayListen == "", "relay_listen", "must be set with relay_public (the local host:port to serve the relay on)"),
			errIf(n.RelayPublic == "", "relay_public", "must be set with relay_listen (the host:port other nodes reach the relay at)"))
		if _, _, err := net.SplitHostPort(n.RelayListen); n.RelayListen != "" && err != nil {
			errs = append(errs, fmt.Errorf("relay_listen: %q is not host:port", n.RelayListen))
		}
		// Every peer sends to relay_public as given: the coordinator refuses
		// host names, which each node would have to resolve.
		if ap, err := netip.ParseAddrPort(n.RelayPublic); n.RelayPublic != "" && (err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast()) {
			errs = append(errs, fmt.Errorf("relay_public: %q is not the IP:port peers reach the relay at (a literal IP address, not a host name, not 0.0.0.0, a port other than 0)", n.RelayPublic))
		}
	}
	if n.MetricsListen != "" {
		errs = append(errs, metricsListen(n.MetricsListen))
	}
	errs = append(errs, n.validateRoutes())
	for _, s := range n.STUNServers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("stun_servers: %q is not host:port", s))
		}
	}
	return errors.Join(errs...)
}

// validateRoutes checks the subnet route and exit node keys.
func (n Node) validateRoutes() error {
	var errs []error
	if _, err := n.parseRoutes(); err != nil {
		errs = append(errs, err)
	}
	if n.ExitNode != "" {
		errs = append(errs, validName("exit_node", n.ExitNode))
		errs = append(errs, errIf(n.AdvertiseExitNode, "exit_node", "%q: an exit node uses no other exit node; unset exit_node or advertise_exit_node", n.ExitNode))
	}
	return errors.Join(errs...)
}

// CheckOS says which settings this OS can't honour: serving routes and
// using an exit node need Linux. Validate leaves it out, so a file meant
// for a Linux node checks anywhere.
func (n Node) CheckOS() error {
	var errs []error
	if n.ExitNode != "" {
		errs = append(errs, ExitNodeSupported())
	}
	if runtime.GOOS != "linux" && (len(n.AdvertiseRoutes) > 0 || n.AdvertiseExitNode) {
		errs = append(errs, fmt.Errorf("advertise_routes, advertise_exit_node: serving routes needs Linux (forwarding and masquerading with nftables), not %s", runtime.GOOS))
	}
	return errors.Join(errs...)
}

// parseRoutes reads advertise_routes, each a prefix a LAN may have.
func (n Node) parseRoutes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range n.AdvertiseRoutes {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("advertise_routes: %q is not a prefix; write NETWORK/BITS, e.g. 192.168.10.0/24", s))
		case wire.IsExitRoute(p):
			errs = append(errs, fmt.Errorf("advertise_routes: %q is an exit route; set advertise_exit_node to offer this node as an exit node", s))
		default:
			if err := wire.CheckRoute(p); err != nil {
				errs = append(errs, fmt.Errorf("advertise_routes: %w", err))
				continue
			}
			out = append(out, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := wire.CheckRoutes(out, nil); err != nil {
		return nil, fmt.Errorf("advertise_routes: %w", err)
	}
	return out, nil
}

// Routes are the routes this node advertises: advertise_routes, and the
// exit routes with advertise_exit_node. Call it on valid settings.
func (n Node) Routes() []netip.Prefix {
	out, _ := n.parseRoutes()
	if n.AdvertiseExitNode {
		out = append(out, wire.ExitRouteV4, wire.ExitRouteV6)
	}
	return out
}

// ExitNodeSupported says why this OS can't use an exit node: on macOS
// the node's own sockets can't be kept out of a default route through the
// tunnel (Linux marks them, see internal/underlay).
func ExitNodeSupported() error {
	if runtime.GOOS == "linux" {
		return nil
	}
	return fmt.Errorf("exit_node: using an exit node needs Linux, not %s", runtime.GOOS)
}

// validName checks a DNS label (RFC 1123 §2.1): letters, digits and
// hyphens, 1-63 characters, not starting or ending with a hyphen.
func validName(key, s string) error {
	if err := wire.ValidDNSLabel(s); err != nil {
		return fmt.Errorf("%s: %q is not a DNS label: %w", key, s, err)
	}
	return nil
}

// metricsListen checks a node's metrics_listen. Metrics are served without
// authentication, so never on every interface by accident: the host is
// localhost or a literal address, not a wildcard (nor a name, which could
// resolve to anything).
func metricsListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("metrics_listen: %q is not host:port (e.g. 127.0.0.1:9480)", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("metrics_listen: %q: port %q is not 1-65535", s, port)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case host == "" || (err == nil && ip.IsUnspecified()):
		return fmt.Errorf("metrics_listen: %q would serve unauthenticated metrics on every interface; give a loopback address (127.0.0.1:9480) or one address of this host", s)
	case err != nil:
		return fmt.Errorf("metrics_listen: %q: the host must be localhost or an IP address of this host, not a name", s)
	case ip.IsMulticast():
		return fmt.Errorf("metrics_listen: %q is a multicast address; give a loopback address (127.0.0.1:9480) or one address of this host", s)
	}
	return nil
}
