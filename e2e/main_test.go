package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// sweepTimeout bounds removing leftover namespaces.
const sweepTimeout = time.Minute

// TestMain removes what crashed earlier runs left behind, and on SIGINT or
// SIGTERM removes this run's namespaces before exiting: t.Cleanup doesn't
// run when the test binary is interrupted.
func TestMain(m *testing.M) {
	if os.Getenv(envGate) != "" && netlab.Check() == nil {
		sweep(false)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-sigs
			fmt.Fprintf(os.Stderr, "e2e: %v: removing this run's namespaces and processes\n", s)
			sweep(true)
			os.Exit(2)
		}()
	}
	os.Exit(m.Run())
}

func sweep(includeOwn bool) {
	ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
	defer cancel()
	removed, err := netlab.Sweep(ctx, netlab.DefaultPrefix, includeOwn)
	if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: removed %d lab namespaces and directories: %v\n", len(removed), removed)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: removing lab namespaces and directories: %v\n", err)
	}
}
