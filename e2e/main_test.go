package e2e

import (
	"os"
	"testing"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// TestMain removes what crashed earlier runs left behind, and on SIGINT or
// SIGTERM removes this run's namespaces before exiting (netlab.Guard).
func TestMain(m *testing.M) {
	if os.Getenv(envGate) != "" && netlab.Check() == nil {
		netlab.Guard("e2e")
	}
	os.Exit(m.Run())
}
