package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newDebugCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "debug",
		Short: "Look inside the running node: Go profiles",
	}
	cmd.AddCommand(newDebugProfileCmd())
	return cmd
}

func newDebugProfileCmd() *cobra.Command {
	var socket, kind, out string
	var seconds int
	cmd := &cobra.Command{
		Use:   "profile -o FILE",
		Short: "Write a Go profile of the running node, for go tool pprof",
		Long: `Record the running node's CPU for --seconds (1 to 120), or take a snapshot of
another profile (--kind heap, allocs, goroutine, mutex, block), through the
control socket, and write it to FILE in pprof's format (- for stdout). Read it
with 'go tool pprof -top FILE'. Only one CPU profile is recorded at a time.`,
		Example: "  sudo meshnode debug profile --seconds 20 -o cpu.prof\n  go tool pprof -top cpu.prof",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("-o FILE is required (- for stdout)")}
			}
			w := cmd.OutOrStdout()
			if out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			if err := newLocalClient(socket).Profile(cmd.Context(), kind, seconds, w); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote the %s profile to %s; read it with: go tool pprof -top %s\n", kind, out, out)
			}
			return nil
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&kind, "kind", "cpu", "cpu, heap, allocs, goroutine, mutex or block")
	cmd.Flags().IntVar(&seconds, "seconds", 10, "how long to record a CPU profile (1 to 120)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the file to write (- for stdout)")
	return cmd
}
