// Command meshnode is the one binary of meshnode: the node agent, the
// coordinator and the administration commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
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
	// cobra reports an unknown subcommand as a plain error.
	if errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitFailure
}

// minArgs wants at least one argument of each name, the last repeatable.
func minArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) >= len(names) {
			return nil
		}
		return usageError{fmt.Errorf("want %s %s...; got %d argument(s): %q", strings.Join(names[:len(names)-1], " "), names[len(names)-1], len(args), args)}
	}
}

// optionalArg takes no argument or one, named name.
func optionalArg(name string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) <= 1 {
			return nil
		}
		return usageError{fmt.Errorf("want at most one argument, %s; got %d: %q", name, len(args), args)}
	}
}

// exactArgs is cobra.ExactArgs with a usage error that names what is wanted.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) == len(names):
			return nil
		case len(names) == 0:
			return usageError{fmt.Errorf("takes no arguments; got %q (flags start with --)", args)}
		}
		return usageError{fmt.Errorf("want %d argument(s), %s; got %d: %q", len(names), strings.Join(names, " "), len(args), args)}
	}
}
