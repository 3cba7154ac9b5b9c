package relayclient

import (
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

// The tests here wait on the relay client's timers against in-process
// relays, using little CPU: more of them run at once than there are cores.
func TestMain(m *testing.M) { testenv.MainParallel(m, 8) }
