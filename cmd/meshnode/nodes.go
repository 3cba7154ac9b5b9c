package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

func newNodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List and remove the coordinator's nodes",
		Long: `Administer the nodes registered with the coordinator.` + tokenAdminNote + `
Presence (online, last seen) is live only through a running coordinator.`,
		Example: "  meshnode nodes list\n  meshnode nodes remove laptop",
	}
	cmd.AddCommand(newNodesListCmd(), newNodesRemoveCmd())
	return cmd
}

func newNodesListCmd() *cobra.Command {
	var (
		file   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List registered nodes with addresses, keys, presence and endpoints",
		Example: "  meshnode nodes list\n  meshnode nodes list --json | jq -r '.[] | select(.online) | .name'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			nodes, err := admin.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), nodes)
			}
			return printNodes(cmd.OutOrStdout(), nodes)
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func newNodesRemoveCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the mesh and from every peer map",
		Long: `Remove a node. A running coordinator drops it from every peer map at once
and closes its stream; its addresses and name become free. The node may join
again only with a new join token.` + tokenAdminNote,
		Example: "  meshnode nodes remove laptop",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			n, err := admin.RemoveNode(cmd.Context(), args[0])
			if errors.Is(err, coordinator.ErrNotFound) {
				return usageError{fmt.Errorf("no node named %q; see 'meshnode nodes list'", args[0])}
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Removed node %s (%s).\n", n.Name, nodeAddrs(n))
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func printNodes(w io.Writer, nodes []wire.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tPUBLIC KEY\tONLINE\tLAST SEEN\tENDPOINTS")
	for _, n := range nodes {
		seen := "never"
		if !n.LastSeen.IsZero() {
			seen = n.LastSeen.Local().Format(timeLayout)
		}
		var eps []string
		for _, e := range n.Endpoints {
			eps = append(eps, e.Addr.String()+"/"+e.Kind)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\n", n.Name, nodeAddrs(n), n.PublicKey, n.Online, seen, strings.Join(eps, " "))
	}
	return tw.Flush()
}

func nodeAddrs(n wire.Node) string {
	s := make([]string, len(n.Addresses))
	for i, a := range n.Addresses {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
