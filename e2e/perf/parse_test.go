package perf

import (
	"bufio"
	"crypto/ecdh"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseIperf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		want    float64
		wantErr string
	}{
		{"report", `{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":3.1e9},"sum_received":{"bits_per_second":3.0e9}}}`, 3000, ""},
		{"warning before the JSON", "iperf3: warning: something\n" + `{"end":{"sum_received":{"bits_per_second":1.5e6}}}`, 1.5, ""},
		{"error in the report", `{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`, 0, "Connection refused"},
		{"no JSON", "iperf3: error - unable to connect\n", 0, "no JSON report"},
		{"no rate", `{"end":{}}`, 0, "no received rate"},
		{"truncated", `{"end":{"sum_received":`, 0, "iperf3 report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIperf(tc.out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseIperf = %v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseIperf = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseStatTicks(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 40.
	const stat = "4242 (meshnode) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 40 0 0 20 0 12 0 100 2000000 3000 18446744073709551615\n"
	for _, tc := range []struct {
		name, stat string
		want       uint64
		wantErr    bool
	}{
		{"plain", stat, 290, false},
		{"name with spaces and parentheses", strings.Replace(stat, "(meshnode)", "(a (b) c)", 1), 290, false},
		{"no name", "4242 S 1", 0, true},
		{"short", "4242 (x) S 1 2 3", 0, true},
		{"not a number", strings.Replace(stat, " 250 ", " x ", 1), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatTicks(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStatTicks = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if got := cpuPercent(150, 3*time.Second); got != 50 {
		t.Errorf("150 ticks in 3 s = %v%%, want 50%%", got)
	}
}

func TestParseReplyTime(t *testing.T) {
	const out = "PING 100.88.0.3 (100.88.0.3) 56(84) bytes of data.\n" +
		"[1764484800.250000] 64 bytes from 100.88.0.3: icmp_seq=7 ttl=64 time=0.41 ms\n\n" +
		"--- 100.88.0.3 ping statistics ---\n7 packets transmitted, 1 received, 85.7143% packet loss, time 312ms\n"
	got, err := parseReplyTime(out)
	if want := time.Unix(1764484800, 250_000_000); err != nil || !got.Equal(want) {
		t.Errorf("parseReplyTime = %v, %v; want %v", got, err, want)
	}
	if _, err := parseReplyTime("PING 100.88.0.3\n\n--- statistics ---\n500 packets transmitted, 0 received, 100% packet loss\n"); err == nil {
		t.Error("parseReplyTime found a reply in output with none")
	}
}

func TestParseRTTs(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []time.Duration
	}{
		{"every reply", "PING 198.18.1.1 (198.18.1.1) 56(84) bytes of data.\n" +
			"64 bytes from 198.18.1.1: icmp_seq=1 ttl=63 time=0.046 ms\n" +
			"64 bytes from 198.18.1.1: icmp_seq=2 ttl=63 time=0.040 ms\n" +
			"64 bytes from 198.18.1.1: icmp_seq=3 ttl=63 time=0.044 ms\n\n" +
			"--- 198.18.1.1 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 65ms\n" +
			"rtt min/avg/max/mdev = 0.040/0.043/0.046/0.002 ms\n", rtts(46, 40, 44)},
		{"slow paths print fewer decimals", "PING 100.88.0.3 (100.88.0.3) 56(84) bytes of data.\n" +
			"64 bytes from 100.88.0.3: icmp_seq=1 ttl=64 time=1.52 ms\n" +
			"64 bytes from 100.88.0.3: icmp_seq=2 ttl=64 time=12.3 ms\n" +
			"64 bytes from 100.88.0.3: icmp_seq=3 ttl=64 time=123 ms\n", rtts(1520, 12300, 123000)},
		{"lost echoes and a duplicate", "PING 172.16.99.2 (172.16.99.2) 56(84) bytes of data.\n" +
			"64 bytes from 172.16.99.2: icmp_seq=2 ttl=64 time=0.210 ms\n" +
			"64 bytes from 172.16.99.2: icmp_seq=2 ttl=64 time=0.250 ms (DUP!)\n" +
			"64 bytes from 172.16.99.2: icmp_seq=4 ttl=64 time=0.198 ms\n\n" +
			"--- 172.16.99.2 ping statistics ---\n4 packets transmitted, 2 received, +1 duplicates, 50% packet loss, time 31ms\n", rtts(210, 198)},
		{"with -D timestamps", "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n" +
			"[1796031229.947426] 64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.050 ms\n" +
			"[1796031229.953851] 64 bytes from 127.0.0.1: icmp_seq=2 ttl=64 time=0.043 ms\n", rtts(50, 43)},
		{"no reply", "PING 172.16.100.3 (172.16.100.3) 56(84) bytes of data.\n\n" +
			"--- 172.16.100.3 ping statistics ---\n30 packets transmitted, 0 received, 100% packet loss, time 9999ms\n", nil},
		{"unreachable", "PING 198.18.1.1 (198.18.1.1) 56(84) bytes of data.\n" +
			"From 10.1.0.1 icmp_seq=1 Destination Host Unreachable\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRTTs(tc.out)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parseRTTs = %v; want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("parseRTTs = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseLinks(t *testing.T) {
	got, err := parseLinks(`[{"ifindex":2,"link_netnsid":0,"ifname":"eth0","flags":["UP"]},{"ifindex":3,"ifname":"h1","master":"lan0"}]`)
	if err != nil || !slices.Equal(got, []string{"eth0", "h1"}) {
		t.Errorf("parseLinks = %q, %v; want eth0 and h1", got, err)
	}
	if got, err := parseLinks("\n"); err != nil || len(got) != 0 {
		t.Errorf("parseLinks of nothing = %q, %v; want none", got, err)
	}
	if _, err := parseLinks("Cannot open netlink socket"); err == nil {
		t.Error("parseLinks accepted an error message")
	}
}

func TestUAPIConfig(t *testing.T) {
	priv, err := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	peer := priv.PublicKey()
	cfg := uapiConfig(priv, peer, netip.MustParseAddrPort("198.18.2.1:51820"), netip.MustParseAddr("172.16.99.2"))
	want := "private_key=" + strings.Repeat("00", 32) + "\n" +
		"listen_port=51820\nreplace_peers=true\n" +
		"public_key=" + hex.EncodeToString(peer.Bytes()) + "\n" +
		"endpoint=198.18.2.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=172.16.99.2/32\n"
	if cfg != want {
		t.Errorf("uapiConfig =\n%s\nwant\n%s", cfg, want)
	}
}

func TestReadErrno(t *testing.T) {
	for _, tc := range []struct {
		reply   string
		wantErr bool
	}{
		{"errno=0\n\n", false},
		{"errno=22\n\n", true},
		{"\n", true},
		{"errno=0\n", true}, // cut short: no blank line
	} {
		if err := readErrno(bufio.NewReader(strings.NewReader(tc.reply))); (err != nil) != tc.wantErr {
			t.Errorf("readErrno(%q) = %v, want error %v", tc.reply, err, tc.wantErr)
		}
	}
}

func TestNebulaConfig(t *testing.T) {
	lh := netip.MustParseAddrPort("198.18.3.10:4242")
	for _, tc := range []struct {
		h         nebulaHost
		wantHosts []string
	}{
		{nebulaHost{name: "a"}, []string{"172.16.100.1"}},
		{nebulaHost{name: "lighthouse", lighthouse: true}, nil},
	} {
		b, err := nebulaConfig("/d", tc.h, lh)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			PKI           struct{ CA, Cert, Key string }
			StaticHostMap map[string][]string `yaml:"static_host_map"`
			Lighthouse    struct {
				AmLighthouse bool     `yaml:"am_lighthouse"`
				Hosts        []string `yaml:"hosts"`
			}
			TUN struct {
				Dev      string
				MTU      int
				Disabled bool
			}
			Firewall struct{ Inbound, Outbound []map[string]string }
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("%s's config: %v\n%s", tc.h.name, err, b)
		}
		if cfg.PKI.Cert != "/d/"+tc.h.name+".crt" || cfg.PKI.CA != "/d/ca.crt" {
			t.Errorf("%s's pki %+v", tc.h.name, cfg.PKI)
		}
		if got := cfg.StaticHostMap["172.16.100.1"]; !slices.Equal(got, []string{lh.String()}) {
			t.Errorf("%s's static_host_map %v, want the lighthouse at %v", tc.h.name, cfg.StaticHostMap, lh)
		}
		if cfg.Lighthouse.AmLighthouse != tc.h.lighthouse || !slices.Equal(cfg.Lighthouse.Hosts, tc.wantHosts) {
			t.Errorf("%s's lighthouse section %+v", tc.h.name, cfg.Lighthouse)
		}
		if cfg.TUN.Dev != "nebula1" || cfg.TUN.Disabled || cfg.TUN.MTU != 1300 {
			t.Errorf("%s's tun %+v", tc.h.name, cfg.TUN)
		}
		if len(cfg.Firewall.Inbound) != 1 || cfg.Firewall.Inbound[0]["host"] != "any" || len(cfg.Firewall.Outbound) != 1 {
			t.Errorf("%s's firewall %+v, want allow all", tc.h.name, cfg.Firewall)
		}
	}
}
