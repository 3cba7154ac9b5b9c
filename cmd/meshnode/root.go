package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshnode",
		Short: "A mesh VPN: one private subnet across every NAT",
		Long: `meshnode joins machines into one private overlay network.

Run a coordinator on a host that every node can reach, create a join token,
then run "meshnode up --token TOKEN" on each machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(
		newVersionCmd(),
		newCoordinatorCmd(),
		newTokenCmd(),
		newNodesCmd(),
		newRoutesCmd(),
		newPolicyCmd(),
		newAdminCmd(),
		newUpCmd(),
		newDownCmd(),
		newSetCmd(),
		newStatusCmd(),
		newPingCmd(),
		newDNSCmd(),
		newNetcheckCmd(),
		newConfigCmd(),
		newDebugCmd(),
	)
	return root
}
