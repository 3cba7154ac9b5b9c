package natlab

import (
	"fmt"
	"strings"
	"testing"
)

func TestNewNATErrors(t *testing.T) {
	l, _ := newLab(t)
	mustNAT(t, l, NATConfig{Name: "taken", PublicIP: ip("198.18.7.7")})
	other := New(nil)
	t.Cleanup(func() { other.Close() })
	foreign := mustNAT(t, other, NATConfig{Name: "foreign"})
	tests := []struct {
		name string
		cfg  NATConfig
		want []string // each must appear in the error
	}{
		{"no name", NATConfig{}, []string{`bad Name ""`}},
		{"mapping", NATConfig{Name: "n", Mapping: 7}, []string{"bad Mapping 7"}},
		{"filtering", NATConfig{Name: "n", Filtering: -1}, []string{"bad Filtering -1"}},
		{"port alloc", NATConfig{Name: "n", PortAlloc: 3}, []string{"bad PortAlloc 3"}},
		{"negative step", NATConfig{Name: "n", PortAlloc: PortSequential, PortStep: -2}, []string{"bad PortStep -2"}},
		{"step without sequential", NATConfig{Name: "n", PortStep: 2}, []string{"bad PortStep 2", "PortSequential"}},
		{"negative timeout", NATConfig{Name: "n", IdleTimeout: -1}, []string{"bad IdleTimeout -1ns"}},
		{"negative uplink hops", NATConfig{Name: "n", UplinkHops: -1}, []string{"bad UplinkHops -1", "0..255"}},
		{"too many uplink hops", NATConfig{Name: "n", UplinkHops: 256}, []string{"bad UplinkHops 256"}},
		{"unspecified IP", NATConfig{Name: "n", PublicIP: ip("0.0.0.0")}, []string{"bad PublicIP 0.0.0.0"}},
		{"IP in use", NATConfig{Name: "n", PublicIP: ip("198.18.7.7")}, []string{"bad PublicIP 198.18.7.7", "already in use"}},
		{"foreign upstream", NATConfig{Name: "n", Upstream: foreign}, []string{`bad Upstream "foreign"`}},
		{"several at once", NATConfig{Name: "n", Mapping: 9, IdleTimeout: -1}, []string{"bad Mapping 9", "bad IdleTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.NewNAT(tt.cfg)
			if err == nil {
				t.Fatal("NewNAT accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	l, _ := newLab(t)
	n := mustNAT(t, l, NATConfig{Name: "n", PortAlloc: PortSequential})
	cfg := n.Config()
	if cfg.IdleTimeout != DefaultIdleTimeout || cfg.PortStep != 1 || cfg.PublicIP != ip("198.18.1.1") || cfg.Seed == 0 {
		t.Errorf("resolved config %+v", cfg)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		v    fmt.Stringer
		want string
	}{
		{EndpointIndependent, "endpoint-independent"},
		{AddressDependent, "address-dependent"},
		{AddressAndPortDependent, "address-and-port-dependent"},
		{Mapping(5), "Mapping(5)"},
		{EndpointIndependentFiltering, "endpoint-independent"},
		{AddressDependentFiltering, "address-dependent"},
		{AddressAndPortDependentFiltering, "address-and-port-dependent"},
		{Filtering(5), "Filtering(5)"},
		{PortPreserve, "preserve"},
		{PortSequential, "sequential"},
		{PortRandom, "random"},
		{PortAlloc(5), "PortAlloc(5)"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}

// TestMisusePanics checks the calls without an error result reject bad
// input loudly, naming it.
func TestMisusePanics(t *testing.T) {
	l, _ := newLab(t)
	h := l.NewHost("h", ip("198.18.0.5"))
	n := mustNAT(t, l, NATConfig{Name: "n"})
	tests := []struct {
		name string
		do   func()
		want string
	}{
		{"empty host name", func() { l.NewHost("") }, "empty name"},
		{"duplicate host IP", func() { l.NewHost("dup", ip("198.18.0.5")) }, "198.18.0.5 is already in use"},
		{"host IP equals a NAT", func() { l.NewHost("dup", n.PublicIP()) }, "already in use"},
		{"bad host IP", func() { n.NewHost("bad", ip("224.0.0.1")) }, "bad address 224.0.0.1"},
		{"negative latency", func() { h.SetLatency(-1) }, "SetLatency(-1ns)"},
		{"loss above 1", func() { h.SetLoss(1.5) }, "SetLoss(1.5)"},
		{"public IP taken", func() { n.SetPublicIP(ip("198.18.0.5")) }, "SetPublicIP(198.18.0.5): already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("panic %v, want one mentioning %q", r, tt.want)
				}
			}()
			tt.do()
		})
	}
}
