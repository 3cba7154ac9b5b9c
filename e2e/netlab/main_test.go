package netlab

import (
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

// The lab tests mostly wait, on ip and nft commands and on probes that
// must not arrive, each in namespaces of its own: more of them run at
// once than there are cores.
func TestMain(m *testing.M) { testenv.MainParallel(m, 6) }
