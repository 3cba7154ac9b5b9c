package wire

import (
	"net/netip"
	"strings"
	"testing"
)

func TestFilterValidate(t *testing.T) {
	p := netip.MustParsePrefix
	ok := FilterRule{Rule: "0", Src: []netip.Prefix{p("100.88.0.1/32")}, Dst: []netip.Prefix{p("100.88.0.0/16")}, Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 443}}}
	with := func(f func(*FilterRule)) []FilterRule { r := ok; f(&r); return []FilterRule{r} }
	tests := []struct {
		name    string
		f       Filter
		wantErr string
	}{
		{"no policy", Filter{AllowAll: true}, ""},
		{"a rule", Filter{Rules: []FilterRule{ok}}, ""},
		{"allow all with rules", Filter{AllowAll: true, Rules: []FilterRule{ok}}, "allow_all with rules"},
		{"unknown protocol", Filter{Rules: with(func(r *FilterRule) { r.Proto = "sctp" })}, `protocol "sctp"`},
		{"no source", Filter{Rules: with(func(r *FilterRule) { r.Src = nil })}, "src: 0 prefixes"},
		{"unmasked prefix", Filter{Rules: with(func(r *FilterRule) { r.Dst = []netip.Prefix{p("100.88.0.1/16")} })}, "not a masked prefix"},
		{"reversed ports", Filter{Rules: with(func(r *FilterRule) { r.Ports = []PortRange{{443, 80}} })}, "first above last"},
		{"too many rules", Filter{Rules: make([]FilterRule, MaxFilterRules+1)}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestPortRangeContains(t *testing.T) {
	r := PortRange{80, 443}
	for port, want := range map[uint16]bool{79: false, 80: true, 300: true, 443: true, 444: false} {
		if got := r.Contains(port); got != want {
			t.Errorf("%v.Contains(%d) = %v, want %v", r, port, got, want)
		}
	}
}
