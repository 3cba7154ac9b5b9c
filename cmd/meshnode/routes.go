package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

func newRoutesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "List, approve and reject the subnet and exit routes nodes advertise",
		Long: `Administer the routes nodes advertise ('meshnode up --advertise-routes',
'--advertise-exit-node'). Nothing is routed until you approve it (or the
access policy's auto_approvers, or auto_approve_routes, do): then every
peer sends traffic for the route through that node (a subnet router), or
may choose it as its exit node (the exit routes 0.0.0.0/0 and ::/0). A
running coordinator shows an approval or rejection to every node at once.` + tokenAdminNote + `
PRIMARY and ONLINE are live only through a running coordinator.`,
		Example: `  meshnode routes list
  meshnode routes approve office-gw 192.168.10.0/24
  meshnode routes approve office-gw exit
  meshnode routes reject office-gw 192.168.10.0/24`,
	}
	cmd.AddCommand(newRoutesListCmd(), newRoutesChangeCmd(true), newRoutesChangeCmd(false))
	return cmd
}

func newRoutesListCmd() *cobra.Command {
	return adminListCmd(&cobra.Command{
		Use:   "list",
		Short: "List every node's advertised and approved routes",
		Long: `List each node's routes: whether it advertises each one, whether it is
approved, and whether it is primary. Of several nodes that serve one prefix,
peers send it through the primary: the one that was primary, while it stays
online, else the online one approved first. An exit route is never primary:
each node's user chooses an exit node ('meshnode set --exit-node').` + tokenAdminNote,
		Example: "  meshnode routes list\n  meshnode routes list --json | jq -r '.[] | select(.advertised and (.approved | not)) | \"\\(.node) \\(.prefix)\"'",
	}, coordinator.Admin.Routes, printRoutes)
}

// newRoutesChangeCmd is `routes approve` (approve) or `routes reject`.
func newRoutesChangeCmd(approve bool) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "approve NAME PREFIX...",
		Short: "Approve routes a node advertises; peers route them through it at once",
		Long: `Approve routes the named node advertises: it forwards traffic from the mesh
to them, and every peer routes them through it (or, for the exit routes,
may choose it as an exit node). PREFIX is a route as the node advertises it,
or "exit" for both exit routes.` + tokenAdminNote,
		Example: `  meshnode routes approve office-gw 192.168.10.0/24 10.20.0.0/16
  meshnode routes approve office-gw exit`,
		Args: minArgs("NAME", "PREFIX"),
	}
	verb := "Approved"
	if !approve {
		cmd.Use = "reject NAME PREFIX..."
		cmd.Short = "Withdraw the approval of a node's routes; peers stop using them at once"
		cmd.Long = `Withdraw the approval of the named node's routes (or keep ones it advertises
from being approved): every peer stops routing them through it, and it stops
forwarding to them, at once. A node that advertises them again waits for a
new approval. PREFIX is a route, or "exit" for both exit routes.` + tokenAdminNote
		cmd.Example = "  meshnode routes reject office-gw 192.168.10.0/24\n  meshnode routes reject office-gw exit"
		verb = "Rejected"
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		prefixes, err := parseRoutes(args[1:])
		if err != nil {
			return usageError{err}
		}
		admin, err := openAdmin(cmd, file)
		if err != nil {
			return err
		}
		defer admin.Close()
		var list []coordinator.RouteInfo
		if approve {
			list, err = admin.ApproveRoutes(cmd.Context(), name, prefixes)
		} else {
			list, err = admin.RejectRoutes(cmd.Context(), name, prefixes)
		}
		switch {
		case errors.Is(err, coordinator.ErrNotFound):
			return usageError{fmt.Errorf("no node named %q; see 'meshnode nodes list'", name)}
		case errors.Is(err, coordinator.ErrRouteUnknown):
			return usageError{fmt.Errorf("%w; see 'meshnode routes list'", err)}
		case err != nil:
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s for %s. Its routes now:\n", verb, joinAddrs(prefixes), name)
		return printRoutes(cmd.OutOrStdout(), list)
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

// parseRoutes reads PREFIX arguments: masked prefixes, or "exit" for both
// exit routes; errors name the argument.
func parseRoutes(args []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, a := range args {
		if a == config.ExitApproval {
			out = append(out, wire.ExitRouteV4, wire.ExitRouteV6)
			continue
		}
		p, err := netip.ParsePrefix(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not a route: give a prefix such as 192.168.10.0/24, or %q for the exit routes", a, config.ExitApproval))
			continue
		}
		if p != p.Masked() {
			errs = append(errs, fmt.Errorf("%q has host bits set: use %s", a, p.Masked()))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// printRoutes is the routes table.
func printRoutes(w io.Writer, list []coordinator.RouteInfo) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no routes: nodes advertise them with 'meshnode up --advertise-routes' or '--advertise-exit-node'")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPREFIX\tADVERTISED\tAPPROVED\tPRIMARY\tONLINE")
	for _, r := range list {
		primary := yesNo(r.Primary)
		if wire.IsExitRoute(r.Prefix) {
			primary = "exit"
		}
		approved := "no"
		if r.Approved {
			approved = r.ApprovedAt.Local().Format(timeLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Prefix, yesNo(r.Advertised), approved, primary, yesNo(r.Online))
	}
	return tw.Flush()
}
