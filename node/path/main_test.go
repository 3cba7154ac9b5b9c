package path

import (
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

// The tests here wait on punch and heartbeat timers over in-process
// fabrics, using little CPU: more of them run at once than there are cores.
func TestMain(m *testing.M) { testenv.MainParallel(m, 8) }
