package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshnode/meshnode/internal/wire"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, "mtu: 1300\nlisten_port: 1000\nkeepalive: 10s\nname: from-file\n")
	t.Setenv("MESHNODE_LISTEN_PORT", "2000")
	t.Setenv("MESHNODE_NAME", "from-env")
	defaults := DefaultNode()
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	AddFlags(fs, &defaults)
	if err := fs.Parse([]string{"--name", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	got := DefaultNode()
	if _, err := Load(&got, file, "", fs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"mtu (file over default)", got.MTU, 1300},
		{"listen_port (env over file)", got.ListenPort, 2000},
		{"name (flag over env)", got.Name, "from-flag"},
		{"keepalive (duration from file)", got.Keepalive, 10 * time.Second},
		{"tun_driver (default)", got.TUNDriver, "wireguard"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.key, tc.got, tc.want)
		}
	}
}

// TestTokenFromEnvironment: the join token and its file can come from the
// environment, which other users can't read (/proc/PID/environ is the
// owner's), unlike a command line.
func TestTokenFromEnvironment(t *testing.T) {
	t.Setenv("MESHNODE_TOKEN", "mntok1_from-env")
	t.Setenv("MESHNODE_TOKEN_FILE", "/run/secrets/token")
	n := DefaultNode()
	if _, err := Load(&n, "", "", nil); err != nil {
		t.Fatal(err)
	}
	if n.Token != "mntok1_from-env" || n.TokenFile != "/run/secrets/token" {
		t.Fatalf("token %q, token_file %q from the environment", n.Token, n.TokenFile)
	}
}

func TestLoadErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown key", "mtu: 1400\nlisten_prot: 5\n", []string{"unknown key listen_prot", "allowed keys", "listen_port"}},
		{"bad type", "mtu: big\n", []string{"mtu", "big"}},
		{"not yaml", "mtu: [\n", []string{"not valid YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := DefaultNode()
			_, err := Load(&n, writeFile(t, tc.file), "", nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	n := DefaultNode()
	if _, err := Load(&n, "/nonexistent/meshnode.yaml", "", nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/meshnode.yaml") {
		t.Errorf("missing explicit file: error %v does not name the path", err)
	}
}

func TestValidateNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Node)
		want   string // empty: valid
	}{
		{"defaults", func(*Node) {}, ""},
		{"mtu low", func(n *Node) { n.MTU = 1000 }, "mtu: 1000"},
		{"driver", func(n *Node) { n.TUNDriver = "tap" }, `tun_driver: "tap" is not allowed; use one of wireguard, water`},
		{"keepalive", func(n *Node) { n.Keepalive = time.Millisecond }, "keepalive: 1ms is too short"},
		{"name", func(n *Node) { n.Name = "my laptop" }, `name: "my laptop" is not a DNS label`},
		{"port", func(n *Node) { n.ListenPort = 70000 }, "listen_port: 70000"},
		{"stun", func(n *Node) { n.STUNServers = []string{"stun.example"} }, `stun_servers: "stun.example" is not host:port`},
		{"log", func(n *Node) { n.LogLevel = "loud" }, "log_level"},
		{"relay", func(n *Node) { n.RelayListen, n.RelayPublic = ":3479", "203.0.113.5:3479" }, ""},
		{"relay host name", func(n *Node) { n.RelayListen, n.RelayPublic = ":3479", "relay.example.com:3479" }, `relay_public: "relay.example.com:3479" is not the IP:port`},
		{"relay unspecified", func(n *Node) { n.RelayListen, n.RelayPublic = ":3479", "0.0.0.0:3479" }, `relay_public: "0.0.0.0:3479"`},
		{"relay port 0", func(n *Node) { n.RelayListen, n.RelayPublic = ":3479", "203.0.113.5:0" }, `relay_public: "203.0.113.5:0"`},
		{"relay without listen", func(n *Node) { n.RelayPublic = "203.0.113.5:3479" }, "relay_listen: must be set"},
		{"metrics on loopback", func(n *Node) { n.MetricsListen = "127.0.0.1:9480" }, ""},
		{"metrics on localhost over IPv6", func(n *Node) { n.MetricsListen = "[::1]:9480" }, ""},
		{"metrics on localhost", func(n *Node) { n.MetricsListen = "localhost:9480" }, ""},
		{"metrics on a private address", func(n *Node) { n.MetricsListen = "10.0.0.5:9480" }, ""},
		{"metrics on every interface", func(n *Node) { n.MetricsListen = ":9480" }, `metrics_listen: ":9480" would serve unauthenticated metrics on every interface`},
		{"metrics on 0.0.0.0", func(n *Node) { n.MetricsListen = "0.0.0.0:9480" }, `metrics_listen: "0.0.0.0:9480" would serve`},
		{"metrics on ::", func(n *Node) { n.MetricsListen = "[::]:9480" }, `metrics_listen: "[::]:9480" would serve`},
		{"metrics on a name", func(n *Node) { n.MetricsListen = "metrics.example:9480" }, `metrics_listen: "metrics.example:9480": the host must be localhost or an IP address`},
		{"metrics without a port", func(n *Node) { n.MetricsListen = "127.0.0.1" }, `metrics_listen: "127.0.0.1" is not host:port`},
		{"metrics port 0", func(n *Node) { n.MetricsListen = "127.0.0.1:0" }, `metrics_listen: "127.0.0.1:0": port "0" is not 1-65535`},
		{"metrics on multicast", func(n *Node) { n.MetricsListen = "224.0.0.1:9480" }, `metrics_listen: "224.0.0.1:9480" is a multicast address`},
		{"LANs", func(n *Node) { n.AdvertiseRoutes = []string{"192.168.10.0/24", " 10.20.0.0/16", "2001:db8:10::/64"} }, ""},
		{"exit node", func(n *Node) { n.AdvertiseExitNode = true }, ""},
		{"not a prefix", func(n *Node) { n.AdvertiseRoutes = []string{"192.168.10.0"} }, `advertise_routes: "192.168.10.0" is not a prefix`},
		{"host bits", func(n *Node) { n.AdvertiseRoutes = []string{"192.168.10.1/24"} }, "use 192.168.10.0/24"},
		{"loopback", func(n *Node) { n.AdvertiseRoutes = []string{"127.0.0.0/8"} }, "advertise_routes: route 127.0.0.0/8 overlaps 127.0.0.0/8"},
		{"default route", func(n *Node) { n.AdvertiseRoutes = []string{"0.0.0.0/0"} }, "set advertise_exit_node"},
		{"twice", func(n *Node) { n.AdvertiseRoutes = []string{"10.1.0.0/16", "10.1.0.0/16"} }, "listed twice"},
		{"use an exit node", func(n *Node) { n.ExitNode = "office" }, ""},
		{"exit node name", func(n *Node) { n.ExitNode = "office gw" }, `exit_node: "office gw" is not a DNS label`},
		{"an exit node using one", func(n *Node) { n.ExitNode, n.AdvertiseExitNode = "office", true }, "an exit node uses no other exit node"},
		{"dns", func(n *Node) { n.DNS = "resolv.conf" }, `dns: "resolv.conf" is not allowed; use one of split, manage-resolv-conf`},
		{"dns managed", func(n *Node) { n.DNS = DNSManageResolvConf }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := DefaultNode()
			tc.mutate(&n)
			err := n.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateCoordinatorReportsEveryProblem(t *testing.T) {
	c := DefaultCoordinator()
	c.Listen = "8443"
	c.PublicURL = "http://example"
	c.TLSCert = "/x.pem"
	c.RelayRate = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"listen", "public_url", "tls_cert", "relay_rate: 0 Mbit/s"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
	if err := DefaultCoordinator().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

// keyCase is a value of one key, and whether it is valid.
type keyCase struct {
	value string
	ok    bool
}

// checkKey validates the default coordinator settings with each value of
// key set, and wants errors that name the key.
func checkKey(t *testing.T, key string, set func(*Coordinator, string), cases []keyCase) {
	t.Helper()
	for _, tc := range cases {
		c := DefaultCoordinator()
		set(&c, tc.value)
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s %q: error %v, want ok %v", key, tc.value, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), key) {
			t.Errorf("%s %q: error %q does not name the key", key, tc.value, err)
		}
	}
}

func TestValidateSTUNListenV6(t *testing.T) {
	checkKey(t, "stun_listen_v6", func(c *Coordinator, v string) { c.STUNListenV6 = v }, []keyCase{
		{"", true},
		{"[2001:db8::1]:3478", true},
		{"[2001:db8::1]:0", true},
		{"[::]:3478", false},
		{"198.51.100.1:3478", false},
		{"[::ffff:198.51.100.1]:3478", false},
		{"vpn.example.com:3478", false},
		{"2001:db8::1", false},
	})
}

// The page speaks plain HTTP, so ui_listen is loopback or off.
func TestValidateUIListen(t *testing.T) {
	checkKey(t, "ui_listen", func(c *Coordinator, v string) { c.UIListen = v }, []keyCase{
		{"", true},
		{"127.0.0.1:9481", true},
		{"[::1]:9481", true},
		{"localhost:9481", true},
		{"127.0.0.1:0", true},
		{":9481", false},
		{"0.0.0.0:9481", false},
		{"10.0.0.5:9481", false},
		{"ui.example.com:9481", false},
		{"127.0.0.1", false},
	})
}

func TestValidateDatabase(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"/srv/meshnode/coordinator.db", true},
		{"coordinator.db", true},
		{"postgres://meshnode:secret@db.example.com:5432/meshnode", true},
		{"postgresql://meshnode@db.example.com/meshnode?sslmode=verify-full", true},
		{"mysql://meshnode:secret@db.example.com/meshnode", false},
		{"postgres:///meshnode", false},
	} {
		c := DefaultCoordinator()
		c.Database = tc.value
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("database %q: error %v, want ok %v", tc.value, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "database") || strings.Contains(err.Error(), "secret")) {
			t.Errorf("database %q: error %q does not name the key, or shows the password", tc.value, err)
		}
	}
}

func TestValidateAutoApproveRoutes(t *testing.T) {
	for _, tc := range []struct {
		value []string
		want  string // empty: valid
	}{
		{nil, ""},
		{[]string{"office=192.168.0.0/16", "gw=exit", "v6=2001:db8::/32"}, ""},
		{[]string{"office"}, `"office" is not TAG=PREFIX`},
		{[]string{"=10.0.0.0/8"}, `"=10.0.0.0/8" is not TAG=PREFIX`},
		{[]string{"office=192.168.1.1/16"}, `"192.168.1.1/16" is not a network`},
		{[]string{"office=everything"}, `"everything" is not a network`},
	} {
		c := DefaultCoordinator()
		c.AutoApproveRoutes = tc.value
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tc.value, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "auto_approve_routes")):
			t.Errorf("%q: error %v, want it to name the key and contain %q", tc.value, err, tc.want)
		}
	}
}

// Routes are the routes advertised: advertise_routes, then the exit
// routes.
func TestNodeRoutes(t *testing.T) {
	n := DefaultNode()
	n.AdvertiseRoutes, n.AdvertiseExitNode = []string{"192.168.10.0/24"}, true
	if got := fmt.Sprint(n.Routes()); got != "[192.168.10.0/24 0.0.0.0/0 ::/0]" {
		t.Errorf("Routes = %s", got)
	}
}

func TestCoordinatorDNS(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name    string
		domain  string
		records []string
		want    wire.DNSConfig
		wantErr string
	}{
		{name: "default", domain: wire.DefaultDNSDomain, want: wire.DNSConfig{Domain: "mesh.internal"}},
		{name: "a final dot and capitals", domain: "Corp.Internal.", want: wire.DNSConfig{Domain: "corp.internal"}},
		{
			name: "records grouped by name, in order", domain: "mesh.internal",
			records: []string{"nas=192.168.1.10", "Printer.Office = 10.0.0.7", "nas=fd00::10"},
			want: wire.DNSConfig{Domain: "mesh.internal", Records: []wire.DNSRecord{
				{Name: "nas", Addrs: []netip.Addr{a("192.168.1.10"), a("fd00::10")}},
				{Name: "printer.office", Addrs: []netip.Addr{a("10.0.0.7")}},
			}},
		},
		{name: "bad domain", domain: "mesh_internal", wantErr: "dns_domain:"},
		{name: "no address", domain: "mesh.internal", records: []string{"nas"}, wantErr: `dns_records: "nas" is not NAME=IP`},
		{name: "host name for an address", domain: "mesh.internal", records: []string{"nas=nas.lan"}, wantErr: `dns_records: "nas=nas.lan" is not NAME=IP`},
		{name: "full name", domain: "mesh.internal", records: []string{"nas.mesh.internal=10.0.0.1"}, wantErr: "without the domain (nas)"},
		{name: "bad name", domain: "mesh.internal", records: []string{"my nas=10.0.0.1"}, wantErr: "letters, digits and inner hyphens"},
		{name: "multicast", domain: "mesh.internal", records: []string{"group=224.0.0.1"}, wantErr: "unicast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultCoordinator()
			c.DNSDomain, c.DNSRecords = tc.domain, tc.records
			got, err := c.DNS()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DNS() error %v, want one containing %q", err, tc.wantErr)
				}
				if verr := c.Validate(); verr == nil || !strings.Contains(verr.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want the same error", verr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("DNS() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
