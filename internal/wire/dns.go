package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultDNSDomain is the mesh's DNS domain unless the coordinator's
// configuration names another: .internal is reserved for private use
// (ICANN, 2024), so it never collides with a public name. A node uses it
// until a welcome says otherwise.
const DefaultDNSDomain = "mesh.internal"

// Bounds on the DNS configuration a welcome carries, so that a hostile or
// broken coordinator can't make a node hold an unbounded zone.
const (
	MaxDNSRecords     = 1024
	MaxDNSRecordAddrs = 64 // addresses of one name
	// MaxDNSName is the longest name in text form without the final dot
	// (RFC 1035 §2.3.4: 255 octets on the wire, two of them length bytes).
	MaxDNSName = 253
	// MaxDNSLabel is the longest label (RFC 1035 §2.3.4).
	MaxDNSLabel = 63
)

// DNSConfig is the mesh's DNS as the administrator configures it on the
// coordinator, sent in every welcome. Every node answers NAME.Domain for
// each member; Records adds names the administrator chose (a NAS on a
// subnet route). A nil *DNSConfig in a welcome (an older coordinator)
// means DefaultDNSDomain and no records.
type DNSConfig struct {
	Domain  string      `json:"domain"`
	Records []DNSRecord `json:"records,omitempty"`
}

// DNSRecord is one extra name: Name is relative to the domain ("nas" is
// nas.<domain>; "printer.office" works too), Addrs its IPv4 (A) and IPv6
// (AAAA) addresses. An extra record wins over a member of the same name:
// a member can't take a name the administrator gave.
type DNSRecord struct {
	Name  string       `json:"name"`
	Addrs []netip.Addr `json:"addrs"`
}

// Validate checks a DNS configuration from the coordinator before a node
// answers from it.
func (c *DNSConfig) Validate() error {
	var errs []error
	if err := ValidDNSName(c.Domain); err != nil {
		errs = append(errs, fmt.Errorf("dns domain: %w", err))
	}
	if len(c.Records) > MaxDNSRecords {
		errs = append(errs, fmt.Errorf("dns: %d records, more than %d", len(c.Records), MaxDNSRecords))
	}
	for _, r := range c.Records {
		if err := r.validate(c.Domain); err != nil {
			errs = append(errs, fmt.Errorf("dns record %q: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r DNSRecord) validate(domain string) error {
	if err := ValidDNSName(r.Name); err != nil {
		return err
	}
	if len(r.Name)+1+len(domain) > MaxDNSName {
		return fmt.Errorf("%s.%s is longer than %d characters", r.Name, domain, MaxDNSName)
	}
	if len(r.Addrs) == 0 || len(r.Addrs) > MaxDNSRecordAddrs {
		return fmt.Errorf("%d addresses, want 1 to %d", len(r.Addrs), MaxDNSRecordAddrs)
	}
	for _, a := range r.Addrs {
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("address %v: want a unicast IPv4 or IPv6 address without a zone", a)
		}
	}
	return nil
}

// ValidDNSName checks a name in text form, without the final dot: labels
// of letters, digits and inner hyphens (RFC 1123 §2.1), 1-63 characters
// each, at most 253 in all. It is the syntax of host names, which is all
// the mesh's names need.
func ValidDNSName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > MaxDNSName {
		return fmt.Errorf("%q is longer than %d characters", s, MaxDNSName)
	}
	for label := range strings.SplitSeq(s, ".") {
		if err := ValidDNSLabel(label); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

// ValidDNSLabel checks one label: 1-63 letters, digits and hyphens, not
// starting or ending with a hyphen (RFC 1123 §2.1).
func ValidDNSLabel(l string) error {
	if l == "" || len(l) > MaxDNSLabel {
		return fmt.Errorf("label %q: want 1 to %d characters", l, MaxDNSLabel)
	}
	for i := range len(l) {
		c := l[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(l)-1
		if !ok {
			return fmt.Errorf("label %q: use letters, digits and inner hyphens", l)
		}
	}
	return nil
}
