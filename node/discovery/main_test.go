package discovery

import (
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

// The tests here wait out STUN silences against in-process servers, using
// little CPU: more of them run at once than there are cores.
func TestMain(m *testing.M) { testenv.MainParallel(m, 8) }
