package policy

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzParse: any file parses or fails with errors that each name the
// file; a policy that parses resolves into filters every node accepts.
func FuzzParse(f *testing.F) {
	f.Add(readExample(f))
	for _, s := range []string{
		"rules: []\n",
		"groups:\n  g: [a, tag:b, 10.0.0.0/8]\nrules:\n  - {from: group:g, to: '*'}\n",
		"rules:\n  - from: a\n    to: [internet, fd00::/8]\n    ports: [1-65535, 22]\n    proto: udp\n",
		"rules:\n  - from: *\n",
		"a: &x [1]\nb: *x\n",
		"rules:\n  - {from: laptop, to: 100.88.0.0/16}\n",
		"rules: []\nauto_approvers:\n  routes:\n    192.168.0.0/16: [tag:office]\n  exit_node: tag:exit\n",
	} {
		f.Add([]byte(s))
	}
	nodes := mesh()
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse("f.yaml", src)
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *Error
				if !errors.As(e, &pe) || pe.File != "f.yaml" {
					t.Fatalf("error %v names no file", e)
				}
			}
			return
		}
		p.Warnings(nodes)
		r, _ := Resolve(p, 1, nodes, testNet)
		for _, n := range nodes {
			if err := r.Filter(n.Name).Validate(); err != nil {
				t.Fatalf("filter of %s: %v\npolicy:\n%s", n.Name, err, src)
			}
			r.Test(n.Name, netip.MustParseAddr("192.168.10.1"), "tcp", 80)
			r.Visible(n.Name, "laptop")
			p.AutoApproves(n.Tags, netip.MustParsePrefix("192.168.10.0/24"))
		}
	})
}
