package node_test

import (
	"os"
	"testing"

	"github.com/meshnode/meshnode/internal/pgtest"
	"github.com/meshnode/meshnode/internal/testenv"
)

// labParallel is how many in-process lab tests run at once when -parallel
// is not given. Each waits on emulated networks and production timers far
// more than it computes (about half a CPU-second in ten of wall time), so
// the default, one per core, leaves the machine idle and the package slow.
// All of the package's parallel tests at once (about 40, 16 s of CPU in
// all) take 20 s of wall time on two cores, 6 at a time 29 s.
const labParallel = 24

func TestMain(m *testing.M) {
	testenv.Parallel(labParallel)
	// The lab's tests across coordinators share a PostgreSQL cluster
	// (internal/pgtest), stopped once they all ended.
	os.Exit(pgtest.Main(m))
}
