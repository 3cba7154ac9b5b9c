// Package labtest builds a netlab lab inside a test: the part that the
// real-kernel scenarios (e2e) and the data-plane comparison (e2e/perf)
// share.
package labtest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/internal/testenv"
)

// EnvKeep, when set, keeps the lab directory (logs, state) after a run.
const EnvKeep = "MESHNODE_E2E_KEEP"

// NewLab builds a lab whose nodes run bin. It goes away when the test
// ends; a machine that can't run it makes the test unavailable (it skips,
// or fails under CI).
func NewLab(ctx context.Context, t *testing.T, bin string) *netlab.Lab {
	t.Helper()
	keep := os.Getenv(EnvKeep) != ""
	lab, err := netlab.New(ctx, netlab.Options{Bin: bin, KeepDir: keep})
	if errors.Is(err, netlab.ErrUnsupported) {
		testenv.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("remove lab %s: %v", lab.ID(), err)
		}
		if keep {
			t.Logf("lab logs and state kept in %s", lab.Dir())
		}
	})
	return lab
}
