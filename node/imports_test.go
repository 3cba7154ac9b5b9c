package node_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The import graph runs one way: cmd → node and coordinator → shared leaves
// (relay, policy, wire, crypto, ...). The node never imports the
// coordinator, nor the policy (it gets the compiled wire.Filter); the
// relay and the policy, which the others use, import neither, their tests
// included. (The
// node's tests run a real coordinator through internal/meshlab: that is the
// in-process lab, not the agent.)
func TestImportGraphRunsOneWay(t *testing.T) {
	t.Parallel()
	const mod = "github.com/meshnode/meshnode/"
	for _, tc := range []struct {
		pkgs      string
		tests     bool
		forbidden []string
	}{
		{mod + "node/...", false, []string{mod + "coordinator", mod + "policy"}},
		{mod + "relay/...", true, []string{mod + "coordinator", mod + "node"}},
		{mod + "policy/...", true, []string{mod + "coordinator", mod + "node"}},
	} {
		args := []string{"list", "-deps"}
		if tc.tests {
			args = append(args, "-test")
		}
		out, err := exec.Command("go", append(args, tc.pkgs)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", tc.pkgs, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tc.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", tc.pkgs, dep)
				}
			}
		}
	}
}
