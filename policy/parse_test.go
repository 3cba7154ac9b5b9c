package policy

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

func readExample(t testing.TB) []byte {
	t.Helper()
	src, err := os.ReadFile("testdata/home-office.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestParseExample(t *testing.T) {
	p, err := Parse("home-office.yaml", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, r := range p.rules {
		labels = append(labels, r.label)
	}
	want := []string{
		"1: Home browses the office web and file shares.",
		"2: home prints at the office",
		"3: Only the administrator may log in to office machines.",
		"4: Everyone may ping everyone.",
		"5: On hotel Wi-Fi the laptop goes out through the office exit node.",
		"6: Office machines reach each other on anything.",
	}
	if strings.Join(labels, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rule labels:\n%s\nwant:\n%s", strings.Join(labels, "\n"), strings.Join(want, "\n"))
	}
	if got := p.rules[2].ports; len(got) != 1 || got[0] != (wire.PortRange{First: 22, Last: 22}) {
		t.Errorf("rule 3 ports %v, want 22", got)
	}
	if p.rules[4].proto != wire.ProtoAny || p.rules[4].to[0].kind != kindInternet {
		t.Errorf("rule 5: %+v", p.rules[4])
	}
	if len(p.Warnings(nil)) == 0 {
		t.Error("no warnings for a policy naming nodes of an empty mesh")
	}
}

// TestParseErrors: every mistake names its line and column, the value,
// and what to write instead.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error, in order of the file
	}{
		{"empty", "", []string{"p.yaml: the file is empty"}},
		{"only comments", "# nothing\n", []string{"p.yaml: the file is empty"}},
		{"not a mapping", "- a\n", []string{"p.yaml:1:1: the policy must be a mapping"}},
		{"unknown top key", "rules: []\nrulez: []\n", []string{`p.yaml:2:1: the policy: unknown key "rulez"; the keys are groups, rules, auto_approvers`}},
		{"no rules", "groups: {}\n", []string{"has no rules"}},
		{"rules not a list", "rules: {from: a}\n", []string{"p.yaml:1:8: rules must be a list"}},
		{"tab", "rules:\n\t- from: a\n", []string{"p.yaml:2:1: YAML syntax", "spaces, not tabs"}},
		{"bare star", "rules:\n  - from: *\n    to: a\n", []string{`write "*" in quotes`}},
		{"alias", "groups:\n  g: &x [a]\nrules:\n  - from: *x\n    to: a\n", []string{"p.yaml:2:6: YAML anchors and aliases", "p.yaml:4:11: YAML anchors"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"a second YAML document"}},
		{"duplicate key", "rules:\n  - from: a\n    from: b\n    to: c\n", []string{`p.yaml:3:5: rule 1: "from" is given twice (first at line 2)`}},
		{"unknown rule key", "rules:\n  - from: a\n    too: b\n", []string{"p.yaml:2:5: rule 1 has no to:", `p.yaml:3:5: rule 1: unknown key "too"`}},
		{"rule not a mapping", "rules:\n  - a\n", []string{"p.yaml:2:5: rule 1 must be a mapping"}},
		{"missing from", "rules:\n  - to: a\n", []string{"p.yaml:2:5: rule 1 has no from:"}},
		{"upper-case tag", "rules:\n  - from: tag:Home\n    to: a\n", []string{`p.yaml:2:11: rule 1 from: "tag:Home": "Home" is not a valid tag`, "write tag:home"}},
		{"upper-case name", "rules:\n  - from: Laptop\n    to: a\n", []string{`p.yaml:2:11: rule 1 from: "Laptop" is not a node name`, "write laptop"}},
		{"unknown prefix", "rules:\n  - from: host:a\n    to: a\n", []string{`"host:a": unknown kind of entry`}},
		{"prefix as source", "rules:\n  - from: 10.0.0.0/8\n    to: a\n", []string{`p.yaml:2:11: rule 1 from: "10.0.0.0/8" can only be a destination`}},
		{"internet as source", "rules:\n  - from: internet\n    to: a\n", []string{`"internet" can only be a destination`}},
		{"unmasked prefix", "rules:\n  - from: a\n    to: 192.168.10.1/24\n", []string{`p.yaml:3:9: rule 1 to: "192.168.10.1/24": has address bits set past /24; write 192.168.10.0/24`}},
		{"bad prefix", "rules:\n  - from: a\n    to: 192.168.10.0/33\n", []string{"not an address prefix"}},
		{"mapped address", "rules:\n  - from: a\n    to: ::ffff:10.0.0.1\n", []string{"write the IPv4 form, 10.0.0.1/32"}},
		{"zone", "rules:\n  - from: a\n    to: fe80::1%eth0\n", []string{"leave out the %zone"}},
		{"boolean entry", "rules:\n  - from: [true]\n    to: a\n", []string{"true (a YAML boolean) is not an entry", "quote it"}},
		{"empty entry", "rules:\n  - from: [a, ]\n    to: [~]\n", []string{"p.yaml:3:10: rule 1 to: an empty value is not an entry"}},
		{"empty list", "rules:\n  - from: []\n    to: a\n", []string{"p.yaml:2:11: rule 1 from: the list is empty"}},
		{"undefined group", "rules:\n  - from: group:ops\n    to: a\n", []string{`p.yaml:2:11: rule 1 from: "group:ops": no group ops is defined`}},
		{"nested group", "groups:\n  a: [b]\n  c: [group:a]\nrules: []\n", []string{`p.yaml:3:7: group c: "group:a": a group can't hold another group`}},
		{"bad group name", "groups:\n  Ops: [a]\nrules: []\n", []string{`p.yaml:2:3: groups: "Ops" is not a valid group name`}},
		{"group of prefixes as source", "groups:\n  lan: [10.0.0.0/8]\nrules:\n  - from: group:lan\n    to: a\n", []string{`p.yaml:4:11: rule 1 from: "10.0.0.0/8" (in group lan) can only be a destination`}},
		{"bad proto", "rules:\n  - from: a\n    to: b\n    proto: sctp\n", []string{`p.yaml:4:12: rule 1: proto "sctp": want tcp, udp, icmp or any`}},
		{"upper-case proto", "rules:\n  - from: a\n    to: b\n    proto: TCP\n", []string{"write it in lower case, tcp"}},
		{"file order", "rules:\n  - proto: TCP\n    from: A\n    to: b\n", []string{"p.yaml:2:12: rule 1: proto", `p.yaml:3:11: rule 1 from: "A"`}},
		{"icmp ports", "rules:\n  - from: a\n    to: b\n    proto: icmp\n    ports: [22]\n", []string{"p.yaml:5:12: rule 1: icmp has no ports"}},
		{"port zero", "rules:\n  - from: a\n    to: b\n    ports: [0]\n", []string{`p.yaml:4:13: rule 1: ports: "0" is not a port`}},
		{"port too big", "rules:\n  - from: a\n    to: b\n    ports: [70000]\n", []string{`"70000" is not a port`}},
		{"backwards range", "rules:\n  - from: a\n    to: b\n    ports: [8080-8000]\n", []string{`range "8080-8000" runs backwards; write 8000-8080`}},
		{"port list of lists", "rules:\n  - from: a\n    to: b\n    ports: [[22]]\n", []string{"ports: a list is not a port"}},
		{"no ports", "rules:\n  - from: a\n    to: b\n    ports: []\n", []string{"ports: [] allows no port"}},
		{"name not text", "rules:\n  - name: [x]\n    from: a\n    to: b\n", []string{"p.yaml:2:11: rule 1: name must be a line of text"}},
		{"long name", "rules:\n  - name: " + strings.Repeat("é", MaxNameLen+1) + "\n    from: a\n    to: b\n", []string{"is longer than 64 characters"}},
		{"approver by name", "rules: []\nauto_approvers:\n  routes:\n    10.1.0.0/16: [gw, tag:office]\n", []string{`p.yaml:4:19: auto_approvers routes "10.1.0.0/16": "gw": only tags approve routes`}},
		{"approver everyone", "rules: []\nauto_approvers:\n  exit_node: \"*\"\n", []string{`p.yaml:3:14: auto_approvers exit_node: "*": only tags approve routes`}},
		{"approver unmasked", "rules: []\nauto_approvers:\n  routes:\n    10.1.2.0/16: tag:office\n", []string{`p.yaml:4:5: auto_approvers routes "10.1.2.0/16": has address bits set past /16; write 10.1.0.0/16`}},
		{"approver exit route", "rules: []\nauto_approvers:\n  routes:\n    0.0.0.0/0: tag:exit\n", []string{`p.yaml:4:5: auto_approvers routes "0.0.0.0/0": that is an exit node's route: list exit nodes' tags under exit_node`}},
		{"approver not a prefix", "rules: []\nauto_approvers:\n  routes:\n    office: tag:office\n", []string{`p.yaml:4:5: auto_approvers routes "office": not an address`}},
		{"approver unknown key", "rules: []\nauto_approvers:\n  exit: tag:exit\n", []string{`p.yaml:3:3: auto_approvers: unknown key "exit"; the keys are routes, exit_node`}},
		{"approver empty", "rules: []\nauto_approvers:\n  exit_node: []\n", []string{`p.yaml:3:14: auto_approvers exit_node: the list is empty`}},
		{"approver bad tag", "rules: []\nauto_approvers:\n  exit_node: [tag:Exit]\n", []string{`p.yaml:3:15: auto_approvers exit_node: "tag:Exit": "Exit" is not a valid tag`, "write tag:exit"}},
		{"every error", "rules:\n  - from: A\n    to: B\n  - from: c\n    to: D\n", []string{"p.yaml:2:11", "p.yaml:3:9", "p.yaml:5:9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("parsed: %+v; want an error", p)
			}
			msg := err.Error()
			last := -1
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error:\n%s\nwant it to mention %q", msg, w)
				}
				if i < last {
					t.Errorf("error:\n%s\nmentions %q out of the file's order", msg, w)
				}
				last = i
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("error %v is no *Error", err)
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for range MaxRules + 1 {
		b.WriteString("  - {from: a, to: b}\n")
	}
	if _, err := Parse("p.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than 512 rules") {
		t.Errorf("%d rules: %v", MaxRules+1, err)
	}
	big := "rules: []\n" + strings.Repeat("#", MaxBytes)
	if _, err := Parse("p.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "more than 65536") {
		t.Errorf("a file over MaxBytes: %v", err)
	}
	b.Reset()
	b.WriteString("rules:\n")
	for range 2 * maxErrors {
		b.WriteString("  - {from: A, to: b}\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "and 50 more errors") || strings.Count(err.Error(), "\n") != maxErrors {
		t.Errorf("%d bad rules: want %d errors and a count of the rest; got %v", 2*maxErrors, maxErrors, err)
	}
}

func TestParsePortsAndNames(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`rules:
  - from: [node:internet, "1234"]
    to: [internet, 10.0.0.1, "*"]
    ports: [443, 80, 81-90, 8000-8080, 8081, 85]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.rules[0]
	want := []wire.PortRange{{First: 80, Last: 90}, {First: 443, Last: 443}, {First: 8000, Last: 8081}}
	if len(r.ports) != len(want) {
		t.Fatalf("ports %v, want %v", r.ports, want)
	}
	for i := range want {
		if r.ports[i] != want[i] {
			t.Fatalf("ports %v, want %v", r.ports, want)
		}
	}
	if r.from[0].kind != kindNode || r.from[0].name != "internet" || r.from[1].name != "1234" {
		t.Errorf("from %+v: want the nodes internet and 1234", r.from)
	}
	if r.to[1].kind != kindPrefix || r.to[1].prefix.String() != "10.0.0.1/32" || r.to[2].kind != kindAll {
		t.Errorf("to %+v", r.to)
	}
	if r.label != "1" {
		t.Errorf("label %q, want 1 (no name, no comment)", r.label)
	}
}

func TestParseWarnings(t *testing.T) {
	p, err := Parse("p.yaml", []byte("groups:\n  spare: [a]\nrules:\n  - from: [ghost, tag:nobody]\n    to: [laptop]\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Warnings([]Node{{Name: "laptop", Tags: []string{"home"}}}), "\n")
	for _, want := range []string{`p.yaml:2:3: group "spare" is not used`, `p.yaml:4:12: no node is named "ghost"`, `p.yaml:4:19: no node holds the tag "nobody"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings:\n%s\nwant %q", w, want)
		}
	}
	if strings.Contains(w, "laptop") {
		t.Errorf("warnings:\n%s\nmention the registered node laptop", w)
	}
	p, err = Parse("p.yaml", []byte("rules: []\n"))
	if err != nil || !strings.Contains(strings.Join(p.Warnings(nil), ""), "no rules: every node is denied everything") {
		t.Errorf("rules: []: %v, warnings %q", err, p.Warnings(nil))
	}
}

// TestParseExpansionBound: groups can't expand one side without bound.
func TestParseExpansionBound(t *testing.T) {
	members := strings.Repeat("a,", MaxEntries-1) + "a"
	uses := strings.Repeat("group:g,", MaxEntries-1) + "group:g"
	src := "groups:\n  g: [" + members + "]\nrules:\n  - {from: [" + uses + "], to: b}\n"
	if _, err := Parse("p.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "p.yaml:4:12: rule 1 from: more than 1024 entries once its groups are expanded") {
		t.Fatalf("%d uses of a group of %d: %v", MaxEntries, MaxEntries, err)
	}
}
