package node_test

import (
	"flag"
	"os"
	"strconv"
	"testing"

	"github.com/meshnode/meshnode/internal/pgtest"
)

// labParallel is how many in-process lab tests run at once when -parallel
// is not given. Each waits on emulated networks and production timers far
// more than it computes (about half a CPU-second in ten of wall time), so
// the default, one per core, leaves the machine idle and the package slow.
const labParallel = 6

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(labParallel))
	}
	// The lab's tests across coordinators share a PostgreSQL cluster
	// (internal/pgtest), stopped once they all ended.
	os.Exit(pgtest.Main(m))
}
