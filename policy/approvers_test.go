package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

const approversSrc = `rules: []
auto_approvers:
  routes:
    192.168.10.0/24: [tag:office]
    10.0.0.0/8: [tag:lab, tag:office]
    fd00:10::/32: tag:office
  exit_node: [tag:exit]
`

// AutoApproves: a route within an approver's prefix, of a node holding
// one of its tags; exit routes only by exit_node; nothing without a policy.
func TestAutoApproves(t *testing.T) {
	p, err := Parse("p.yaml", []byte(approversSrc))
	if err != nil {
		t.Fatal(err)
	}
	office, lab, exit, none := []string{"office"}, []string{"lab", "home"}, []string{"exit"}, []string(nil)
	for _, tc := range []struct {
		tags  []string
		route string
		want  bool
	}{
		{office, "192.168.10.0/24", true},
		{office, "192.168.10.128/25", true}, // within the prefix
		{office, "192.168.0.0/16", false},   // wider than it
		{office, "192.168.11.0/24", false},
		{lab, "192.168.10.0/24", false},
		{lab, "10.20.0.0/16", true},
		{office, "10.0.0.0/8", true},
		{none, "10.0.0.0/8", false},
		{office, "fd00:10:1::/48", true},
		{office, "::ffff:192.168.10.0/120", false}, // another family
		{office, "0.0.0.0/0", false},               // exit routes only by exit_node
		{exit, "0.0.0.0/0", true},
		{exit, "::/0", true},
		{exit, "192.168.10.0/24", false},
	} {
		if got := p.AutoApproves(tc.tags, netip.MustParsePrefix(tc.route)); got != tc.want {
			t.Errorf("tags %v, route %s: approved %v, want %v", tc.tags, tc.route, got, tc.want)
		}
	}
	if !p.HasAutoApprovers() {
		t.Error("HasAutoApprovers is false")
	}
	var nilPolicy *Policy
	if nilPolicy.AutoApproves(exit, netip.MustParsePrefix("0.0.0.0/0")) || nilPolicy.HasAutoApprovers() {
		t.Error("no policy approves routes")
	}
	plain, err := Parse("p.yaml", []byte("rules: []\n"))
	if err != nil || plain.HasAutoApprovers() {
		t.Errorf("a policy without auto_approvers has them (%v)", err)
	}
}

// A tag that only auto_approvers name, and no node holds, is warned about
// with its place.
func TestAutoApproversWarnings(t *testing.T) {
	p, err := Parse("p.yaml", []byte(approversSrc))
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings([]Node{{Name: "gw", Tags: []string{"office", "exit"}}})
	if !slices.ContainsFunc(w, func(s string) bool { return strings.HasPrefix(s, `p.yaml:5:18: no node holds the tag "lab"`) }) {
		t.Errorf("warnings %q, want one for tag lab at 5:18", w)
	}
	if slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, `"office"`) || strings.Contains(s, `"exit"`) }) {
		t.Errorf("warnings %q name a tag a node holds", w)
	}
}
