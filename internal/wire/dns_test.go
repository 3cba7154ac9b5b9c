package wire

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDNSConfigValidate(t *testing.T) {
	a := netip.MustParseAddr
	nas := DNSRecord{Name: "nas", Addrs: []netip.Addr{a("192.168.1.10"), a("fd00::10")}}
	many := make([]netip.Addr, MaxDNSRecordAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	tests := []struct {
		name    string
		c       DNSConfig
		wantErr string
	}{
		{"default domain", DNSConfig{Domain: DefaultDNSDomain}, ""},
		{"records", DNSConfig{Domain: "corp.internal", Records: []DNSRecord{nas, {Name: "printer.office", Addrs: []netip.Addr{a("10.1.2.3")}}}}, ""},
		{"empty domain", DNSConfig{}, "dns domain: empty name"},
		{"domain with a space", DNSConfig{Domain: "mesh internal"}, "letters, digits and inner hyphens"},
		{"domain with an empty label", DNSConfig{Domain: "mesh..internal"}, `label ""`},
		{"trailing hyphen", DNSConfig{Domain: "mesh-.internal"}, "inner hyphens"},
		{"long label", DNSConfig{Domain: strings.Repeat("a", 64) + ".internal"}, "1 to 63 characters"},
		{"long name", DNSConfig{Domain: strings.Repeat("abcdefgh.", 30) + "internal"}, "longer than 253"},
		{"record without addresses", DNSConfig{Domain: "m.internal", Records: []DNSRecord{{Name: "nas"}}}, `dns record "nas": 0 addresses`},
		{"record with too many addresses", DNSConfig{Domain: "m.internal", Records: []DNSRecord{{Name: "nas", Addrs: many}}}, "65 addresses"},
		{"record with a zone", DNSConfig{Domain: "m.internal", Records: []DNSRecord{{Name: "nas", Addrs: []netip.Addr{a("fe80::1%eth0")}}}}, "without a zone"},
		{"record with a bad name", DNSConfig{Domain: "m.internal", Records: []DNSRecord{{Name: "_nas", Addrs: nas.Addrs}}}, "inner hyphens"},
		{"too many records", DNSConfig{Domain: "m.internal", Records: make([]DNSRecord, MaxDNSRecords+1)}, "1025 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
