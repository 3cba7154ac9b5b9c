package wire

import (
	"errors"
	"fmt"
	"slices"

	"github.com/meshnode/meshnode/crypto"
)

// Bounds on RelayPairs, so that a broken or hostile coordinator can't make
// a relay node hold or scan without bound.
const (
	// MaxRelayPairWords bounds a member's rule sets: 64 rules a word, at
	// least policy.MaxRules (policy's tests check it).
	MaxRelayPairWords = 8
	// MaxRelayPairNodes bounds the members.
	MaxRelayPairNodes = 1 << 16
)

// RelayPairs tells a designated relay node which of the mesh's nodes may
// see each other under the access policy, so that it relays only between
// those (the coordinator puts every node in a relay node's peer map,
// whatever the policy). It is the coordinator's own test (policy
// Resolved.Visible): two nodes see each other when one is the source of a
// rule the other is a destination of, by name or through its routes; a
// designated relay node sees every node.
//
// The coordinator sends it to a designated relay node in its welcome
// (nil: no policy, every pair) and in a peers message when it changed
// (nil: no change; Open set: the policy was removed).
type RelayPairs struct {
	Version uint64        `json:"version"` // the policy's version
	Open    bool          `json:"open,omitempty"`
	Members []RelayMember `json:"members,omitempty"`
}

// RelayMember is one node's part in the policy's rules: bit i of Src is
// set when it is a source of rule i, of Dst when it is a destination.
type RelayMember struct {
	Key   crypto.PublicKey `json:"key"`
	Relay bool             `json:"relay,omitempty"` // a designated relay node: it sees every node
	Src   []uint64         `json:"src,omitempty"`
	Dst   []uint64         `json:"dst,omitempty"`
}

// Sees reports whether m and o may see each other.
func (m *RelayMember) Sees(o *RelayMember) bool {
	return m.Relay || o.Relay || meets(m.Src, o.Dst) || meets(o.Src, m.Dst)
}

func meets(a, b []uint64) bool {
	for i := range min(len(a), len(b)) {
		if a[i]&b[i] != 0 {
			return true
		}
	}
	return false
}

// Validate checks the bounds, and that no node is listed twice.
func (p *RelayPairs) Validate() error {
	if len(p.Members) > MaxRelayPairNodes {
		return fmt.Errorf("relay pairs: %d members, more than %d", len(p.Members), MaxRelayPairNodes)
	}
	if p.Open && len(p.Members) > 0 {
		return errors.New("relay pairs: open, yet with members")
	}
	seen := make(map[crypto.PublicKey]bool, len(p.Members))
	for _, m := range p.Members {
		if len(m.Src) > MaxRelayPairWords || len(m.Dst) > MaxRelayPairWords {
			return fmt.Errorf("relay pairs: member %s has %d and %d words of rules, more than %d", m.Key.Short(), len(m.Src), len(m.Dst), MaxRelayPairWords)
		}
		if seen[m.Key] {
			return fmt.Errorf("relay pairs: member %s is listed twice", m.Key.Short())
		}
		seen[m.Key] = true
	}
	return nil
}

// Equal reports whether p and o say the same.
func (p *RelayPairs) Equal(o *RelayPairs) bool {
	if p == nil || o == nil {
		return p == o
	}
	return p.Version == o.Version && p.Open == o.Open && slices.EqualFunc(p.Members, o.Members, func(a, b RelayMember) bool {
		return a.Key == b.Key && a.Relay == b.Relay && slices.Equal(a.Src, b.Src) && slices.Equal(a.Dst, b.Dst)
	})
}
