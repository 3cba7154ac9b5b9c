// Command meshnode is the one binary of meshnode: the node agent, the
// coordinator and the administration commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshnode:", err)
		os.Exit(exitCode(err))
	}
}

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure: network, device, coordinator
	exitUsage   = 2 // bad flags, config or arguments: fix the input and retry
)

// usageError marks an error caused by the user's input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}
