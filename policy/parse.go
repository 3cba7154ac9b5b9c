package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// Parse reads a policy file; file names it in errors. It reports every
// problem it finds, each as an *Error with its line and column, joined.
func Parse(file string, src []byte) (*Policy, error) {
	ps := &parser{file: file}
	if len(src) > MaxBytes {
		ps.errorAt(pos{}, "the file is %d bytes, more than %d: a policy this long is hard to get right; use groups, tags and \"*\" to say more with fewer rules", len(src), MaxBytes)
		return nil, ps.err()
	}
	if !utf8.Valid(src) {
		ps.errorAt(pos{}, "the file is not UTF-8 text")
		return nil, ps.err()
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF), err == nil && len(doc.Content) == 0:
		ps.errorAt(pos{}, "the file is empty: write the rules (see 'meshnode policy --help'); to remove the policy, run 'meshnode policy clear'")
		return nil, ps.err()
	case err != nil:
		ps.syntax(err)
		return nil, ps.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.errorf(&extra, "a second YAML document: a policy is one document; remove the '---' line and merge the two")
	} else if !errors.Is(err, io.EOF) {
		ps.syntax(err)
	}
	ps.refuseAliases(&doc)
	if len(ps.errs) > 0 {
		return nil, ps.err()
	}
	p := ps.top(&doc)
	if len(ps.errs) > 0 {
		return nil, ps.err()
	}
	return p, nil
}

// parser gathers every problem of one file.
type parser struct {
	file     string
	errs     []error
	dropped  int // errors beyond maxErrors
	warnings []string
}

func (ps *parser) errorAt(at pos, format string, args ...any) {
	if len(ps.errs) >= maxErrors {
		ps.dropped++
		return
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)})
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	ps.errorAt(at(n), format, args...)
}

func (ps *parser) warnf(n *yaml.Node, format string, args ...any) {
	ps.warnings = append(ps.warnings, (&Error{File: ps.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}).Error())
}

// err is every error, in the order of the file.
func (ps *parser) err() error {
	errs := slices.Clone(ps.errs)
	slices.SortStableFunc(errs, func(a, b error) int {
		x, y := a.(*Error), b.(*Error)
		return cmp.Or(cmp.Compare(x.Line, y.Line), cmp.Compare(x.Column, y.Column))
	})
	if ps.dropped > 0 {
		errs = append(errs, &Error{File: ps.file, Msg: fmt.Sprintf("and %d more errors", ps.dropped)})
	}
	return errors.Join(errs...)
}

func at(n *yaml.Node) pos { return pos{n.Line, n.Column} }

// yamlLine matches the line number in go-yaml's syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax reports a YAML syntax error with its line, and the likeliest
// fix for the mistakes a policy invites.
func (ps *parser) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	hint := "check the indentation (spaces, not tabs) and quote values that hold \": \" or start with a special character"
	if strings.Contains(msg, "alphabetic or numeric character") {
		hint = `write "*" in quotes: a bare * starts a YAML alias`
	}
	ps.errorAt(pos{line, 1}, "YAML syntax: %s; %s", msg, hint)
}

// refuseAliases rejects anchors and aliases: an alias expands a list
// anywhere, and nested ones expand exponentially. Groups name lists.
func (ps *parser) refuseAliases(n *yaml.Node) {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		ps.errorf(n, "YAML anchors and aliases (&name, *name) are not supported: name a list as a group, or write it out; a lone * must be quoted, \"*\"")
		return
	}
	for _, c := range n.Content {
		ps.refuseAliases(c)
	}
}

// mapping walks a mapping's keys in order, refusing repeated and unknown
// keys; each is handed to visit with its value.
func (ps *parser) mapping(n *yaml.Node, what string, known []string, visit func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, "%s must be a mapping of %s, not %s", what, strings.Join(known, ", "), describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			ps.errorf(k, "%s: a key must be a plain word, not %s", what, describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			ps.errorf(k, "%s: %q is given twice (first at line %d); merge them into one", what, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if known != nil && !slices.Contains(known, k.Value) {
			ps.errorf(k, "%s: unknown key %q; the keys are %s", what, k.Value, strings.Join(known, ", "))
			continue
		}
		visit(k.Value, k, v)
	}
}

// Keys of the file and of a rule.
var (
	topKeys  = []string{"groups", "rules", "auto_approvers"}
	ruleKeys = []string{"name", "from", "to", "ports", "proto"}
)

// top reads the whole document.
func (ps *parser) top(doc *yaml.Node) *Policy {
	var groupsNode, rulesNode, approversNode *yaml.Node
	ps.mapping(doc.Content[0], "the policy", topKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "groups":
			groupsNode = v
		case "rules":
			rulesNode = v
		default:
			approversNode = v
		}
	})
	if len(ps.errs) > 0 {
		return nil
	}
	p := &Policy{file: ps.file}
	if groupsNode != nil {
		p.groups = ps.groups(groupsNode)
	}
	if rulesNode == nil {
		ps.errorf(doc.Content[0], "the policy has no rules: it allows only what its rules say, so without them every node is denied everything; write the rules, or 'rules: []' if that is what you want")
		return nil
	}
	p.rules = ps.rules(rulesNode, p.groups)
	if approversNode != nil {
		p.approvers = ps.autoApprovers(approversNode)
	}
	for _, g := range p.groups {
		if !g.used {
			ps.warnings = append(ps.warnings, (&Error{File: ps.file, Line: g.at.line, Column: g.at.col, Msg: fmt.Sprintf("group %q is not used by any rule", g.name)}).Error())
		}
	}
	if len(p.rules) == 0 && len(ps.errs) == 0 {
		ps.warnf(rulesNode, "no rules: every node is denied everything and sees no peers")
	}
	p.warnings = ps.warnings
	return p
}

// groups reads the groups mapping: name → list of entries.
func (ps *parser) groups(n *yaml.Node) []group {
	var out []group
	ps.mapping(n, "groups", nil, func(name string, k, v *yaml.Node) {
		switch {
		case len(out) == MaxGroups:
			ps.errorf(k, "groups: more than %d groups", MaxGroups)
			return
		case !groupPattern.MatchString(name):
			ps.errorf(k, "groups: %q is not a valid group name: use 1-63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit", name)
			return
		}
		g := group{name: name, at: at(k)}
		for _, s := range ps.entries(v, "group "+name) {
			if s.kind == kindGroup {
				ps.errorAt(s.at, "group %s: %q: a group can't hold another group; list its entries here", name, s.text)
				continue
			}
			g.members = append(g.members, s)
		}
		out = append(out, g)
	})
	return out
}

// rules reads the rules list.
func (ps *parser) rules(n *yaml.Node, groups []group) []rule {
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "rules must be a list of rules, each starting with '- ', not %s", describe(n))
		return nil
	}
	if len(n.Content) > MaxRules {
		ps.errorf(n.Content[MaxRules], "more than %d rules: use groups, tags and \"*\" to say more with fewer", MaxRules)
		return nil
	}
	out := make([]rule, 0, len(n.Content))
	for i, item := range n.Content {
		if r, ok := ps.rule(i+1, item, groups); ok {
			out = append(out, r)
		}
	}
	return out
}

// rule reads one rule; index is its 1-based position.
func (ps *parser) rule(index int, n *yaml.Node, groups []group) (rule, bool) {
	before := len(ps.errs) + ps.dropped
	r := rule{at: at(n), proto: wire.ProtoAny, label: strconv.Itoa(index)}
	what := fmt.Sprintf("rule %d", index)
	var name string
	var fromNode, toNode, portsNode *yaml.Node
	ps.mapping(n, what, ruleKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "name":
			name = ps.ruleName(v, what)
		case "from":
			fromNode = v
		case "to":
			toNode = v
		case "ports":
			portsNode = v
		case "proto":
			r.proto = ps.proto(v, what)
		}
	})
	if n.Kind != yaml.MappingNode {
		return r, false
	}
	if fromNode == nil {
		ps.errorf(n, "%s has no from: say which nodes it lets reach its destinations (node names, tag:X, group:X or \"*\")", what)
	} else {
		r.from = ps.side(fromNode, what+" from", groups, true)
	}
	if toNode == nil {
		ps.errorf(n, "%s has no to: say what its sources may reach (node names, tag:X, group:X, \"*\", address prefixes or internet)", what)
	} else {
		r.to = ps.side(toNode, what+" to", groups, false)
	}
	if portsNode != nil {
		r.ports = ps.ports(portsNode, what)
		if r.proto == wire.ProtoICMP {
			ps.errorf(portsNode, "%s: icmp has no ports: remove ports, or make proto tcp or udp", what)
		}
	}
	if name == "" {
		name = commentName(n.HeadComment)
	}
	if name != "" {
		r.label += ": " + name
	}
	return r, len(ps.errs)+ps.dropped == before
}

// ruleName reads a rule's name: one line of printable text.
func (ps *parser) ruleName(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		ps.errorf(n, "%s: name must be a line of text, not %s", what, describe(n))
		return ""
	}
	switch {
	case utf8.RuneCountInString(n.Value) > MaxNameLen:
		ps.errorf(n, "%s: name %q... is longer than %d characters", what, string([]rune(n.Value)[:MaxNameLen]), MaxNameLen)
	case strings.IndexFunc(n.Value, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		ps.errorf(n, "%s: name %q holds characters that aren't printable (a line break, a tab): keep it to one line of text", what, n.Value)
	default:
		return n.Value
	}
	return ""
}

// commentName is a rule's name taken from the comment above it: its first
// line, printable characters only.
func commentName(comment string) string {
	line, _, _ := strings.Cut(comment, "\n")
	line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "#"))
	line = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, line)
	if utf8.RuneCountInString(line) > MaxNameLen {
		line = string([]rune(line)[:MaxNameLen])
	}
	return line
}

// proto reads a rule's protocol.
func (ps *parser) proto(n *yaml.Node, what string) string {
	protos := []string{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoAny}
	if n.Kind == yaml.ScalarNode && slices.Contains(protos, n.Value) {
		return n.Value
	}
	hint := ""
	if n.Kind == yaml.ScalarNode && slices.Contains(protos, strings.ToLower(n.Value)) {
		hint = "; write it in lower case, " + strings.ToLower(n.Value)
	}
	ps.errorf(n, "%s: proto %s: want tcp, udp, icmp or any (any, the default, covers tcp and udp)%s", what, quoteNode(n), hint)
	return wire.ProtoAny
}

// ports reads a rule's ports: numbers and ranges A-B, sorted and merged.
func (ps *parser) ports(n *yaml.Node, what string) []wire.PortRange {
	items := ps.list(n, wire.MaxFilterPorts,
		what+": ports: [] allows no port; leave ports out for every port",
		fmt.Sprintf("%s: more than %d ports and ranges: join neighbours into ranges such as 8000-8080", what, wire.MaxFilterPorts))
	var out []wire.PortRange
	for _, it := range items {
		if r, ok := ps.portRange(it, what); ok {
			out = append(out, r)
		}
	}
	return mergePorts(out)
}

func (ps *parser) portRange(n *yaml.Node, what string) (wire.PortRange, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		ps.errorf(n, "%s: ports: %s is not a port: write a number such as 443 or a range such as 8000-8080", what, quoteNode(n))
		return wire.PortRange{}, false
	}
	first, last, isRange := strings.Cut(n.Value, "-")
	if !isRange {
		last = first
	}
	a, errA := parsePort(first)
	b, errB := parsePort(last)
	switch {
	case errA != nil || errB != nil:
		ps.errorf(n, "%s: ports: %q is not a port (1-65535) or a range such as 8000-8080", what, n.Value)
	case a > b:
		ps.errorf(n, "%s: ports: range %q runs backwards; write %d-%d", what, n.Value, b, a)
	default:
		return wire.PortRange{First: a, Last: b}, true
	}
	return wire.PortRange{}, false
}

func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err == nil && v == 0 {
		err = errors.New("port 0")
	}
	return uint16(v), err
}

// mergePorts sorts ranges and joins those that overlap or touch.
func mergePorts(rs []wire.PortRange) []wire.PortRange {
	slices.SortFunc(rs, func(a, b wire.PortRange) int { return cmp.Compare(a.First, b.First) })
	var out []wire.PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.First) <= uint32(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// side reads from or to, with groups expanded. Sources are nodes only.
func (ps *parser) side(n *yaml.Node, what string, groups []group, source bool) []selector {
	var out []selector
	add := func(s selector, via string) {
		if source && (s.kind == kindPrefix || s.kind == kindInternet) {
			ps.errorAt(s.at, "%s: %q%s can only be a destination (to:); sources are nodes: names, tag:X or \"*\"", what, s.text, via)
			return
		}
		out = append(out, s)
	}
	for _, s := range ps.entries(n, what) {
		if len(out) > MaxExpanded {
			break // reported below; expanding on would only cost memory
		}
		if s.kind != kindGroup {
			add(s, "")
			continue
		}
		i := slices.IndexFunc(groups, func(g group) bool { return g.name == s.name })
		if i < 0 {
			ps.errorAt(s.at, "%s: %q: no group %s is defined under groups:", what, s.text, s.name)
			continue
		}
		groups[i].used = true
		for _, m := range groups[i].members {
			m.at = s.at
			add(m, fmt.Sprintf(" (in group %s)", s.name))
		}
	}
	if len(out) > MaxExpanded {
		ps.errorf(n, "%s: more than %d entries once its groups are expanded: use tags or \"*\"", what, MaxExpanded)
		return nil
	}
	return out
}

// list is the items of a list, or n alone when it is no list; none, and
// an error, when the list is empty or longer than limit.
func (ps *parser) list(n *yaml.Node, limit int, empty, tooLong string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		return []*yaml.Node{n}
	}
	switch {
	case len(n.Content) == 0:
		ps.errorf(n, "%s", empty)
		return nil
	case len(n.Content) > limit:
		ps.errorf(n.Content[limit], "%s", tooLong)
		return nil
	}
	return n.Content
}

// entries reads a list of entries, or a single one.
func (ps *parser) entries(n *yaml.Node, what string) []selector {
	items := ps.list(n, MaxEntries,
		what+": the list is empty; name at least one entry",
		fmt.Sprintf("%s: more than %d entries in one list: use tags, groups or \"*\"", what, MaxEntries))
	var out []selector
	for _, it := range items {
		if s, ok := ps.entry(it, what); ok {
			out = append(out, s)
		}
	}
	return out
}

// entry reads one entry of from, to or a group.
func (ps *parser) entry(n *yaml.Node, what string) (selector, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			hint = "; quote it if it is a name"
		}
		ps.errorf(n, "%s: %s is not an entry: write a node name, tag:X, group:X, \"*\", an address prefix or internet%s", what, quoteNode(n), hint)
		return selector{}, false
	}
	s := selector{at: at(n), text: n.Value}
	v := n.Value
	switch {
	case v == Everyone:
		s.kind = kindAll
	case v == Internet:
		s.kind = kindInternet
	case strings.HasPrefix(v, TagPrefix):
		s.kind, s.name = kindTag, strings.TrimPrefix(v, TagPrefix)
		if !ValidTag(s.name) {
			ps.errorf(n, "%s: %q: %q is not a valid tag: tags are 1-63 lower-case letters, digits, '-', '_', '.' or ':', starting with a letter or digit%s", what, v, s.name, lowerHint(TagPrefix, s.name, ValidTag))
			return s, false
		}
	case strings.HasPrefix(v, GroupPrefix):
		s.kind, s.name = kindGroup, strings.TrimPrefix(v, GroupPrefix)
	case strings.HasPrefix(v, NodePrefix):
		return ps.nodeEntry(n, what, s, strings.TrimPrefix(v, NodePrefix))
	case strings.Contains(v, "/") || isAddr(v):
		p, msg := parsePrefix(v)
		if msg != "" {
			ps.errorf(n, "%s: %q: %s", what, v, msg)
			return s, false
		}
		s.kind, s.prefix = kindPrefix, p
	case strings.Contains(v, ":"):
		ps.errorf(n, "%s: %q: unknown kind of entry; write a node name, tag:X, group:X, \"*\", an address prefix or internet", what, v)
		return s, false
	default:
		return ps.nodeEntry(n, what, s, v)
	}
	return s, true
}

func (ps *parser) nodeEntry(n *yaml.Node, what string, s selector, name string) (selector, bool) {
	s.kind, s.name = kindNode, name
	if !namePattern.MatchString(name) {
		ps.errorf(n, "%s: %q is not a node name: names are DNS labels, lower-case letters, digits and inner '-'%s", what, n.Value, lowerHint("", name, namePattern.MatchString))
		return s, false
	}
	return s, true
}

// lowerHint suggests the lower-case spelling when that one is valid.
func lowerHint(prefix, s string, valid func(string) bool) string {
	if l := strings.ToLower(s); l != s && valid(l) {
		return "; write " + prefix + l
	}
	return ""
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// parsePrefix reads an address or prefix; msg says what is wrong.
func parsePrefix(s string) (netip.Prefix, string) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, "not an address prefix such as 192.168.10.0/24 or fd00:10::/64"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, "not an address"
		}
		if a.Zone() != "" {
			return p, "an address with a zone means nothing to other nodes; leave out the %zone"
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case p.Addr().Is4In6():
		return p, fmt.Sprintf("an IPv4-mapped IPv6 address; write the IPv4 form, %v", netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked())
	case p != p.Masked():
		return p, fmt.Sprintf("has address bits set past /%d; write %v", p.Bits(), p.Masked())
	}
	return p, ""
}

// describe names a YAML node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return quoteNode(n)
	}
	return "that"
}

// quoteNode shows a scalar as written, with its type when YAML gave it
// one other than text.
func quoteNode(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return describe(n)
	}
	switch n.Tag {
	case "!!null":
		return "an empty value"
	case "!!bool":
		return fmt.Sprintf("%s (a YAML boolean)", n.Value)
	case "!!float":
		return fmt.Sprintf("%s (a number)", n.Value)
	}
	return strconv.Quote(n.Value)
}
