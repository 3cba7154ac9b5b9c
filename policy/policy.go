// Package policy is meshnode's access policy: who may reach whom. The
// administrator writes one YAML file (Parse); the coordinator resolves it
// against the registered nodes (Resolve) into each node's packet filter
// (wire.Filter) and the peer maps (Resolved.Visible), and answers what a
// packet would meet (Resolved.Test).
//
// A policy only allows: what no rule allows is denied. No policy at all
// (a nil *Policy) allows everything, as meshnode did before policies.
//
//	groups:                     # optional: names for lists of entries
//	  family: [laptop, tablet]
//	rules:
//	  - name: family browses the office web   # optional; else the comment above the rule
//	    from: [group:family, tag:home]        # node names, tag:X, group:X, "*"
//	    to: [tag:office, 192.168.10.0/24]     # also prefixes (subnet routes) and internet (exit nodes)
//	    ports: [80, 443, 8000-8080]           # optional: every port
//	    proto: tcp                            # tcp, udp, icmp or any (the default)
//	auto_approvers:             # optional: routes approved without 'meshnode routes approve'
//	  routes:
//	    192.168.10.0/24: [tag:office]         # routes within the prefix, of nodes with a tag
//	  exit_node: [tag:exit]                   # exit routes, of nodes with a tag
//
// The node package never imports this one: nodes get the compiled
// wire.Filter only.
package policy

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/meshnode/meshnode/internal/wire"
)

// Bounds on a policy file, so that a mistaken or hostile one can't make
// the coordinator hold or push without bound. The compiled filters are
// bounded again per node (maxNodePrefixes, wire.MaxFilter*).
const (
	// MaxBytes is the largest policy file: a few hundred rules.
	MaxBytes = 64 << 10
	// MaxRules bounds the rules. Each compiles into at most two filter
	// rules per side a node is on (tcp and udp for ports with proto
	// any), so a node's filter stays below wire.MaxFilterRules.
	MaxRules = 512
	// MaxGroups bounds the groups.
	MaxGroups = 256
	// MaxEntries bounds one list (from, to, a group's members).
	MaxEntries = 256
	// MaxExpanded bounds one side of a rule once its groups are expanded.
	MaxExpanded = 1024
	// MaxNameLen bounds a rule's name, which labels its counters.
	MaxNameLen = 64
	// maxErrors bounds the errors and warnings reported for one file.
	maxErrors = 50
)

// Keywords and prefixes of entries in from and to.
const (
	Everyone    = "*"        // every node
	Internet    = "internet" // the internet through an exit node (a destination only)
	TagPrefix   = "tag:"     // the nodes holding a tag
	GroupPrefix = "group:"   // a group defined in the file
	NodePrefix  = "node:"    // a node by name; needed only for a node named like a keyword
)

// tagPattern: tags are short identifiers that read well in a policy file
// (the coordinator grants them: join tokens, 'meshnode nodes tag').
var tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,62}$`)

// namePattern: node names are DNS labels (RFC 1035 §2.3.1, with RFC
// 1123's leading digits), as the coordinator gives them.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// groupPattern: group names are like tags, without ':' (it would read as
// another prefix).
var groupPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidTag reports whether t may be a node's tag.
func ValidTag(t string) bool { return tagPattern.MatchString(t) }

// Policy is a parsed policy file. A nil *Policy is no policy: everything
// is allowed.
type Policy struct {
	file   string // the file's name, for messages
	rules  []rule
	groups []group
	// approvers approve nodes' routes by tag (auto_approvers).
	approvers autoApprovers
	// warnings found while parsing (unused groups, no rules); Warnings
	// adds those that depend on the nodes.
	warnings []string
}

// Rules is the number of rules.
func (p *Policy) Rules() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// rule is one parsed rule: sources may reach destinations on proto and
// ports.
type rule struct {
	label string // "3" or "3: name", for counters and verdicts
	at    pos
	from  []selector
	to    []selector
	proto string
	ports []wire.PortRange // empty: every port
}

// group is a named list of entries, expanded where it is used.
type group struct {
	name    string
	at      pos
	members []selector
	used    bool
}

// kind is what an entry names.
type kind int

const (
	kindAll      kind = iota // "*"
	kindNode                 // a node by name
	kindTag                  // the nodes holding a tag
	kindPrefix               // an address range behind a subnet router
	kindInternet             // the internet, through an exit node
	kindGroup                // a group, only while parsing: side expands it
)

// selector is one entry of from or to, with where it was written.
type selector struct {
	kind   kind
	name   string       // node name or tag
	prefix netip.Prefix // kindPrefix
	at     pos
	text   string // as written, for messages
}

// pos is a place in the file (1-based; 0: unknown).
type pos struct{ line, col int }

// Error is one problem in a policy file.
type Error struct {
	File   string
	Line   int // 0 when the problem has no one place
	Column int
	Msg    string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}
