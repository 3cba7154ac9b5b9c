package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/relay"
)

// Coordinator defaults.
const (
	DefaultCoordinatorConfigFile = "/etc/meshnode/coordinator.yaml"
	// DefaultSTUNPort is the IANA port for STUN (RFC 8489 §18.3).
	DefaultSTUNPort = 3478
	// DefaultRelayRate (Mbit/s per node) is the relay's own default: what
	// measurements chose, in relay.DefaultRateMbit's comment.
	DefaultRelayRate = relay.DefaultRateMbit
	// minMemoryLimit is the least memory_limit: below it a coordinator
	// with a few nodes would spend its time collecting garbage.
	minMemoryLimit ByteSize = 64 << 20
	// maxRelayRate bounds the setting to what one process can forward.
	maxRelayRate = 100_000
	// DefaultMetricsListen serves metrics to a scraper on the same host
	// only: they tell who is online and from where. 9090 is Prometheus's
	// own port, so the default sits beside it.
	DefaultMetricsListen = "127.0.0.1:9479"
	// DefaultUIListen serves the web page on loopback only, beside the
	// metrics (and the node's 9480): administrators reach it from afar
	// through an SSH tunnel, as it speaks plain HTTP.
	DefaultUIListen = "127.0.0.1:9481"
)

// Overlay pools. The IPv4 default is a /16 inside the shared address space
// 100.64.0.0/10 (RFC 6598): rarely used on LANs, and small enough to leave
// the rest of that space to carrier-grade NATs. The IPv6 default is a ULA
// (RFC 4193) whose global ID spells "meshn".
var (
	DefaultNetworkV4 = netip.MustParsePrefix("100.88.0.0/16")
	DefaultNetworkV6 = netip.MustParsePrefix("fd6d:6573:686e::/48")
)

// Coordinator is the coordinator's settings (`meshnode coordinator`).
type Coordinator struct {
	DataDir       string       `mapstructure:"data_dir" desc:"all coordinator state: database, TLS certificate, keys"`
	Database      string       `mapstructure:"database" desc:"the coordinator's database: a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL (PostgreSQL, which several coordinators may share) or a SQLite file's path; empty: coordinator.db in data_dir"`
	Listen        string       `mapstructure:"listen" desc:"control API (HTTPS, also the TCP relay) host:port"`
	STUNListen    string       `mapstructure:"stun_listen" desc:"STUN and UDP relay host:port"`
	STUNAlternate string       `mapstructure:"stun_alternate" desc:"optional second STUN address on a different IP (RFC 5780 NAT behaviour tests)"`
	STUNListenV6  string       `mapstructure:"stun_listen_v6" desc:"STUN and UDP relay on IPv6, [IP]:port with this host's global IPv6 address; nodes are told it, gather over IPv6 and relay there when they have no IPv4; empty: IPv4 only"`
	PublicURL     string       `mapstructure:"public_url" desc:"https URL nodes dial; join tokens carry it"`
	Network       netip.Prefix `mapstructure:"network" desc:"overlay IPv4 pool"`
	NetworkV6     netip.Prefix `mapstructure:"network_v6" desc:"overlay IPv6 pool (a ULA /48 to /64)"`
	TLSCert       string       `mapstructure:"tls_cert" desc:"PEM certificate to serve (default: a self-signed one kept in data_dir)"`
	TLSKey        string       `mapstructure:"tls_key" desc:"PEM private key for tls_cert"`
	RelayRate     int          `mapstructure:"relay_rate" desc:"relayed traffic allowed per node, in Mbit/s (a flood from one node can't starve the others)"`
	MetricsListen string       `mapstructure:"metrics_listen" desc:"host:port serving Prometheus /metrics over plain HTTP, without authentication (keep it on loopback or a private network); empty: off"`
	UIListen      string       `mapstructure:"ui_listen" desc:"loopback host:port serving the web page over plain HTTP, behind one-time links from 'meshnode admin login' (reach it from afar through an SSH tunnel); empty: off"`
	DNSDomain     string       `mapstructure:"dns_domain" desc:"the mesh's DNS domain: every node answers NAME.<dns_domain> for each member"`
	DNSRecords    []string     `mapstructure:"dns_records" desc:"extra names in the mesh's domain, NAME=IP each (nas=192.168.1.10; repeat a name for more addresses); they win over a member of the same name"`
	// AutoApproveRoutes approves routes without the administrator.
	AutoApproveRoutes []string `mapstructure:"auto_approve_routes" desc:"routes approved as soon as a node advertises them: TAG=PREFIX approves the routes within PREFIX of nodes with TAG, TAG=exit their exit routes (e.g. office=192.168.0.0/16, gw=exit); empty: every route waits for 'meshnode routes approve' or the access policy's auto_approvers"`
	LogLevel          string   `mapstructure:"log_level" desc:"debug, info, warn or error"`
	// MemoryLimit is the Go runtime's soft memory limit.
	MemoryLimit ByteSize `mapstructure:"memory_limit" desc:"soft limit on the coordinator's memory, as Go's GOMEMLIMIT (e.g. 450MiB): near it the garbage collector runs more often, trading CPU for memory; empty: none (GOMEMLIMIT in the environment still applies)"`
}

// ExitApproval is the word that stands for the exit routes in
// auto_approve_routes.
const ExitApproval = "exit"

// AutoApproval is one entry of auto_approve_routes: a node with Tag gets
// the routes it advertises within Prefix approved or, with Exit, its exit
// routes.
type AutoApproval struct {
	Tag    string
	Prefix netip.Prefix
	Exit   bool
}

// AutoApprovals parses auto_approve_routes.
func (c Coordinator) AutoApprovals() ([]AutoApproval, error) {
	var out []AutoApproval
	var errs []error
	for _, s := range c.AutoApproveRoutes {
		tag, what, ok := strings.Cut(s, "=")
		if !ok || tag == "" {
			errs = append(errs, fmt.Errorf("auto_approve_routes: %q is not TAG=PREFIX or TAG=%s", s, ExitApproval))
			continue
		}
		if what == ExitApproval {
			out = append(out, AutoApproval{Tag: tag, Exit: true})
			continue
		}
		p, err := netip.ParsePrefix(what)
		if err != nil || p != p.Masked() {
			errs = append(errs, fmt.Errorf("auto_approve_routes: %q: %q is not a network such as 192.168.0.0/16, nor %s", s, what, ExitApproval))
			continue
		}
		out = append(out, AutoApproval{Tag: tag, Prefix: p})
	}
	return out, errors.Join(errs...)
}

// DefaultCoordinator returns the coordinator defaults.
func DefaultCoordinator() Coordinator {
	return Coordinator{
		DataDir:       "/var/lib/meshnode-coordinator",
		Listen:        ":8443",
		STUNListen:    fmt.Sprintf(":%d", DefaultSTUNPort),
		Network:       DefaultNetworkV4,
		NetworkV6:     DefaultNetworkV6,
		RelayRate:     DefaultRelayRate,
		MetricsListen: DefaultMetricsListen,
		UIListen:      DefaultUIListen,
		DNSDomain:     wire.DefaultDNSDomain,
		LogLevel:      "info",
	}
}

// Validate checks every key and reports all problems at once.
func (c Coordinator) Validate() error {
	var errs []error
	errs = append(errs,
		errIf(c.DataDir == "", "data_dir", "must not be empty"),
		hostPort("listen", c.Listen),
		hostPort("stun_listen", c.STUNListen),
		oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error"),
		errIf(!c.Network.IsValid() || !c.Network.Addr().Is4(), "network", "%v must be an IPv4 CIDR such as %v", c.Network, DefaultNetworkV4),
		errIf(c.Network.IsValid() && c.Network.Bits() > 30, "network", "%v is too small; use at most a /30", c.Network),
		errIf(!c.NetworkV6.IsValid() || c.NetworkV6.Addr().Is4(), "network_v6", "%v must be an IPv6 CIDR such as %v", c.NetworkV6, DefaultNetworkV6),
		errIf(c.NetworkV6.IsValid() && c.NetworkV6.Bits() > 64, "network_v6", "%v is too small; use at most a /64", c.NetworkV6),
		errIf((c.TLSCert == "") != (c.TLSKey == ""), "tls_cert", "tls_cert and tls_key go together; set both or neither"),
		errIf(c.RelayRate < 1 || c.RelayRate > maxRelayRate, "relay_rate", "%d Mbit/s is out of range; use 1-%d", c.RelayRate, maxRelayRate),
	)
	if c.STUNAlternate != "" {
		errs = append(errs, hostPort("stun_alternate", c.STUNAlternate))
	}
	if c.STUNListenV6 != "" {
		errs = append(errs, ipv6Port("stun_listen_v6", c.STUNListenV6))
	}
	if c.MetricsListen != "" {
		errs = append(errs, hostPort("metrics_listen", c.MetricsListen))
	}
	errs = append(errs, errIf(c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit, "memory_limit",
		"%v is below the %v a coordinator needs; raise it, or leave it empty for no limit", c.MemoryLimit, minMemoryLimit))
	if c.UIListen != "" {
		errs = append(errs, uiListen(c.UIListen))
	}
	if _, err := c.AutoApprovals(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.DNS(); err != nil {
		errs = append(errs, err)
	}
	if c.Database != "" {
		errs = append(errs, database(c.Database))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		errs = append(errs, errIf(err != nil || u.Scheme != "https" || u.Host == "", "public_url", "%q must be https://HOST:PORT, the address nodes dial", c.PublicURL))
	}
	return errors.Join(errs...)
}

// database checks the database setting: a URL must be PostgreSQL's; any
// other value is a SQLite file's path.
func database(s string) error {
	scheme, _, isURL := strings.Cut(s, "://")
	if !isURL {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (scheme != "postgres" && scheme != "postgresql") || u.Host == "" {
		shown := scheme + "://…"
		if err == nil {
			shown = u.Redacted()
		}
		return fmt.Errorf("database: %q must be postgres://USER:PASSWORD@HOST:PORT/DATABASE or the path of a SQLite file", shown)
	}
	return nil
}

// ipv6Port checks a literal IPv6 address and port: nodes are told it as it
// is, so it must name one address, not a wildcard or a host name.
func ipv6Port(key, s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is6() || ap.Addr().Is4In6() || ap.Addr().IsUnspecified() {
		return fmt.Errorf("%s: %q must be one IPv6 address of this host and a port, such as [2001:db8::1]:3478", key, s)
	}
	return nil
}

func hostPort(key, s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%s: %q is not host:port (e.g. :8443 or 0.0.0.0:8443)", key, s)
	}
	return nil
}

// uiListen checks ui_listen: the page speaks plain HTTP, so its session
// cookie must never cross a network; only loopback serves it.
func uiListen(s string) error {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("ui_listen: %q is not host:port (e.g. %s)", s, DefaultUIListen)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return fmt.Errorf("ui_listen: %q is not a loopback address: the page speaks plain HTTP; serve it on %s and open it from afar through an SSH tunnel", s, DefaultUIListen)
	}
	return nil
}

// DNS is the mesh's DNS configuration as nodes get it: dns_domain and the
// dns_records, one record per name with its addresses in the order given.
func (c Coordinator) DNS() (wire.DNSConfig, error) {
	cfg := wire.DNSConfig{Domain: strings.ToLower(strings.TrimSuffix(c.DNSDomain, "."))}
	if err := wire.ValidDNSName(cfg.Domain); err != nil {
		return wire.DNSConfig{}, fmt.Errorf("dns_domain: %w (use a name such as %s)", err, wire.DefaultDNSDomain)
	}
	byName := map[string]int{}
	var errs []error
	for _, entry := range c.DNSRecords {
		name, ip, ok := strings.Cut(entry, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		addr, err := netip.ParseAddr(strings.TrimSpace(ip))
		switch {
		case !ok || err != nil:
			errs = append(errs, fmt.Errorf("dns_records: %q is not NAME=IP (such as nas=192.168.1.10)", entry))
			continue
		case strings.HasSuffix(name, "."+cfg.Domain):
			errs = append(errs, fmt.Errorf("dns_records: %q: give the name without the domain (%s)", entry, strings.TrimSuffix(name, "."+cfg.Domain)))
			continue
		}
		i, seen := byName[name]
		if !seen {
			i = len(cfg.Records)
			byName[name] = i
			cfg.Records = append(cfg.Records, wire.DNSRecord{Name: name})
		}
		cfg.Records[i].Addrs = append(cfg.Records[i].Addrs, addr)
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("dns_records: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return wire.DNSConfig{}, err
	}
	return cfg, nil
}
