package wire

import (
	"errors"
	"fmt"
	"net/netip"
)

// Packet filter protocols, as a FilterRule names them.
const (
	ProtoAny  = "any"
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp" // ICMP for IPv4, ICMPv6 for IPv6
)

// Bounds on a pushed filter, so that a hostile or broken coordinator can't
// make a node hold or scan an unbounded rule set per packet.
const (
	MaxFilterRules    = 4096
	MaxFilterPrefixes = 1024 // per side of one rule
	MaxFilterPorts    = 64   // port ranges per rule
)

// Filter is the access policy compiled for one node: the coordinator sends
// it in the welcome and again in a peers message whenever it changes. A
// node drops a packet, sent or received, that opens a connection no rule
// allows; replies to allowed connections pass (the node tracks them).
//
// A nil *Filter in a welcome means no policy: every member reaches every
// other, as before policies existed. In a peers message nil means "no
// change"; a Filter with AllowAll set removes the policy.
type Filter struct {
	// Version is the policy's version on the coordinator; a node ignores
	// a filter older than the one it holds.
	Version uint64 `json:"version"`
	// AllowAll: no policy is set; Rules is empty.
	AllowAll bool         `json:"allow_all,omitempty"`
	Rules    []FilterRule `json:"rules,omitempty"`
}

// FilterRule allows packets from any Src prefix to any Dst prefix on the
// given protocol and ports. Only the rules whose Src or Dst covers one of
// the node's own addresses or routes are sent to it.
type FilterRule struct {
	// Rule names the policy rule this was compiled from (its index and
	// comment), for the per-rule counters in status and metrics.
	Rule  string         `json:"rule"`
	Src   []netip.Prefix `json:"src"`
	Dst   []netip.Prefix `json:"dst"`
	Proto string         `json:"proto"`
	// Ports are destination port ranges for tcp and udp (empty: every
	// port); ignored for icmp.
	Ports []PortRange `json:"ports,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.First <= port && port <= r.Last }

// Validate checks a filter from the coordinator before a node applies it.
func (f *Filter) Validate() error {
	if f.AllowAll && len(f.Rules) > 0 {
		return errors.New("filter: allow_all with rules")
	}
	if len(f.Rules) > MaxFilterRules {
		return fmt.Errorf("filter: %d rules, more than %d", len(f.Rules), MaxFilterRules)
	}
	var errs []error
	for i, r := range f.Rules {
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("filter rule %d (%q): %w", i, r.Rule, err))
		}
	}
	return errors.Join(errs...)
}

func (r FilterRule) validate() error {
	var errs []error
	switch r.Proto {
	case ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		errs = append(errs, fmt.Errorf("protocol %q: want %s, %s, %s or %s", r.Proto, ProtoTCP, ProtoUDP, ProtoICMP, ProtoAny))
	}
	for _, side := range []struct {
		name string
		p    []netip.Prefix
	}{{"src", r.Src}, {"dst", r.Dst}} {
		if len(side.p) == 0 || len(side.p) > MaxFilterPrefixes {
			errs = append(errs, fmt.Errorf("%s: %d prefixes, want 1 to %d", side.name, len(side.p), MaxFilterPrefixes))
		}
		for _, p := range side.p {
			if !p.IsValid() || p != p.Masked() {
				errs = append(errs, fmt.Errorf("%s prefix %v: not a masked prefix", side.name, p))
			}
		}
	}
	if len(r.Ports) > MaxFilterPorts {
		errs = append(errs, fmt.Errorf("%d port ranges, more than %d", len(r.Ports), MaxFilterPorts))
	}
	for _, pr := range r.Ports {
		if pr.First > pr.Last {
			errs = append(errs, fmt.Errorf("port range %d-%d: first above last", pr.First, pr.Last))
		}
	}
	return errors.Join(errs...)
}
