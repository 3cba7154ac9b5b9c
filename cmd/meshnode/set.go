package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/node/localapi"
)

func newSetCmd() *cobra.Command {
	var (
		socket   string
		exit     string
		allowLAN bool
	)
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change the running node's exit node",
		Long: `Change the running node's choices; only the flags given change. They last
until the node stops: put exit_node and exit_node_allow_lan_access in its
config file to keep them.

--exit-node NAME sends all of this node's internet traffic, IPv4 and IPv6,
through the peer NAME, an exit node the administrator approved ('meshnode
status' marks them); '' sends it directly again. While the exit node is
unreachable, traffic is blocked rather than sent directly, and 'meshnode
status' says so. The coordinator, relays and peers are still reached
directly. --exit-node-allow-lan-access keeps this host's LANs reachable
directly while an exit node is used.`,
		Example: `  sudo meshnode set --exit-node office-gw
  sudo meshnode set --exit-node office-gw --exit-node-allow-lan-access
  sudo meshnode set --exit-node ''`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req localapi.PrefsRequest
			if cmd.Flags().Changed("exit-node") {
				req.ExitNode = &exit
			}
			if cmd.Flags().Changed("exit-node-allow-lan-access") {
				req.AllowLAN = &allowLAN
			}
			if req.ExitNode == nil && req.AllowLAN == nil {
				return usageError{fmt.Errorf("nothing to set: give --exit-node NAME (or '' for none), or --exit-node-allow-lan-access")}
			}
			p, err := newLocalClient(socket).SetPrefs(cmd.Context(), req)
			if err != nil {
				return err
			}
			switch {
			case p.ExitNode == "":
				fmt.Fprintln(cmd.OutOrStdout(), "No exit node: internet traffic goes directly.")
			case p.AllowLAN:
				fmt.Fprintf(cmd.OutOrStdout(), "Exit node %s: internet traffic goes through it; this host's LANs stay reachable directly.\n", p.ExitNode)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "Exit node %s: internet traffic, and this host's LANs, go through it.\n", p.ExitNode)
			}
			return nil
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&exit, "exit-node", "", "the peer to send internet traffic through; '' for none")
	cmd.Flags().BoolVar(&allowLAN, "exit-node-allow-lan-access", false, "keep this host's LANs reachable directly while an exit node is used")
	return cmd
}
