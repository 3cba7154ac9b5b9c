package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/node/localapi"
)

// newLocalClient is the control-socket client the node commands share.
func newLocalClient(socket string) *localapi.Client { return localapi.NewClient(socket) }

func newDownCmd() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:     "down",
		Short:   "Ask the running node to leave the mesh and exit cleanly",
		Long:    "Ask the node behind the control socket to shut down: it removes its device and routes and exits.",
		Example: "  sudo meshnode down",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := newLocalClient(socket).Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "meshnode is going down")
			return nil
		},
	}
	addSocketFlag(cmd, &socket)
	return cmd
}
