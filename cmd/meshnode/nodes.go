package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

func newNodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List, tag, rename, remove and allow back the coordinator's nodes",
		Long: `Administer the nodes registered with the coordinator.` + tokenAdminNote + `
Presence (online, last seen) is live only through a running coordinator.`,
		Example: `  meshnode nodes list
  meshnode nodes tag office-gw relay
  meshnode nodes rename desktop workstation
  meshnode nodes remove laptop
  meshnode nodes allow laptop`,
	}
	cmd.AddCommand(newNodesListCmd(), newNodesRemoveCmd(), newNodesRenameCmd(), newNodesTagCmd(true), newNodesTagCmd(false),
		newNodesBannedCmd(), newNodesAllowCmd())
	return cmd
}

func newNodesListCmd() *cobra.Command {
	return adminListCmd(&cobra.Command{
		Use:   "list",
		Short: "List registered nodes with addresses, keys, presence, relays and endpoints",
		Long: `List the registered nodes. RELAY is the relay a designated relay node is
offered to its peers as, or "suspended until" a time: a node reported that it
did not carry its traffic, and every node uses the next relay meanwhile.` + tokenAdminNote,
		Example: "  meshnode nodes list\n  meshnode nodes list --json | jq -r '.[] | select(.online) | .name'",
	}, coordinator.Admin.Nodes, printNodes)
}

func newNodesRemoveCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the mesh and from every peer map",
		Long: `Remove a node. A running coordinator drops it from every peer map at once
and closes its stream; its addresses and name become free. Its key is banned:
it can't register again, whatever join token it holds, until you let it back
with 'meshnode nodes allow'.` + tokenAdminNote,
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

func newNodesRenameCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "rename NAME NEWNAME",
		Short: "Give a node a new name, its name in the mesh's DNS",
		Long: `Rename a node. NEWNAME is a DNS label (letters, digits, inner hyphens) no
other node has. A running coordinator shows the change to every peer at once:
within a second every node answers NEWNAME.<dns_domain>, and the old name no
more.` + tokenAdminNote,
		Example: "  meshnode nodes rename desktop workstation",
		Args:    exactArgs("NAME", "NEWNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := coordinator.ValidateName(args[1]); err != nil {
				return usageError{err}
			}
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			n, err := admin.RenameNode(cmd.Context(), args[0], args[1])
			switch {
			case errors.Is(err, coordinator.ErrNotFound):
				return usageError{fmt.Errorf("no node named %q; see 'meshnode nodes list'", args[0])}
			case errors.Is(err, coordinator.ErrNameTaken):
				return usageError{fmt.Errorf("another node is named %q; choose another name, or rename or remove that node first", args[1])}
			case err != nil:
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Renamed node %s to %s (%s).\n", args[0], n.Name, nodeAddrs(n))
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func newNodesTagCmd(add bool) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "tag NAME TAG...",
		Short: "Give a node tags; the tag " + coordinator.RelayTag + " designates it as a relay",
		Long: `Add tags to a registered node. A running coordinator shows the change to
every peer at once.

The tag ` + coordinator.RelayTag + ` designates a relay: a node that sets relay_listen and
relay_public is offered to its peers as a relay only while it holds this tag,
because every node sends its relayed traffic through the relay it is
offered. Grant it only to machines you trust with that (the traffic stays
end-to-end encrypted, but a relay can drop or delay it; one that stops
carrying is suspended once nodes report it). Join tokens can grant
it too: 'meshnode token create --tag ` + coordinator.RelayTag + `'.` + tokenAdminNote,
		Example: `  meshnode nodes tag office-gw ` + coordinator.RelayTag + `
  meshnode nodes tag web-1 web eu`,
		Args: minArgs("NAME", "TAG"),
	}
	verb := "Tagged"
	if !add {
		cmd.Use = "untag NAME TAG..."
		cmd.Short = "Take tags from a node; without " + coordinator.RelayTag + " it is no longer offered as a relay"
		cmd.Long = `Remove tags from a registered node. A running coordinator shows the change
to every peer at once: without the tag ` + coordinator.RelayTag + `, the node's relay is
withdrawn from every peer's map.` + tokenAdminNote
		cmd.Example = `  meshnode nodes untag office-gw ` + coordinator.RelayTag
		verb = "Untagged"
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, tags := args[0], args[1:]
		if err := coordinator.ValidateTags(tags); err != nil {
			return usageError{err}
		}
		admin, err := openAdmin(cmd, file)
		if err != nil {
			return err
		}
		defer admin.Close()
		var n wire.Node
		if add {
			n, err = admin.TagNode(cmd.Context(), name, tags, nil)
		} else {
			n, err = admin.TagNode(cmd.Context(), name, nil, tags)
		}
		if errors.Is(err, coordinator.ErrNotFound) {
			return usageError{fmt.Errorf("no node named %q; see 'meshnode nodes list'", name)}
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s: its tags are now %s.\n", verb, n.Name, tagList(n.Tags))
		return err
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func newNodesBannedCmd() *cobra.Command {
	return adminListCmd(&cobra.Command{
		Use:   "banned",
		Short: "List the keys of removed nodes, which can't join again until allowed",
		Long: `List the keys that 'meshnode nodes remove' banned, newest first, with the
name each node had.` + tokenAdminNote,
		Example: "  meshnode nodes banned\n  meshnode nodes banned --json",
	}, coordinator.Admin.Bans, printBans)
}

// printBans is the table of banned keys.
func printBans(w io.Writer, list []coordinator.Ban) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPUBLIC KEY\tREMOVED")
	for _, b := range list {
		name := b.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, b.PublicKey, b.Since.Local().Format(timeLayout))
	}
	return tw.Flush()
}

func newNodesAllowCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "allow KEY|NAME",
		Short: "Let a removed node's key register again",
		Long: `Lift the ban that 'meshnode nodes remove' put on a node's key, named by the
key or by the name the node had (see 'meshnode nodes banned'). The node can
then join again with a join token; it gets a name and addresses anew.` + tokenAdminNote,
		Example: `  meshnode nodes allow laptop
  meshnode nodes allow 'uHGgmO9f5eGE97eJvfJUgwxH2LPyFh5TdUNu1undL3A='`,
		Args: exactArgs("KEY|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			b, err := admin.AllowNode(cmd.Context(), args[0])
			switch {
			case errors.Is(err, coordinator.ErrNotFound):
				return usageError{fmt.Errorf("no banned key or removed node %q; see 'meshnode nodes banned'", args[0])}
			case errors.Is(err, coordinator.ErrAmbiguous):
				return usageError{err}
			case err != nil:
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Allowed key %s (removed node %q) to join again with a join token.\n", b.PublicKey, b.Name)
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func tagList(tags []string) string {
	if len(tags) == 0 {
		return "none"
	}
	return strings.Join(tags, ",")
}

func printNodes(w io.Writer, nodes []wire.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tPUBLIC KEY\tTAGS\tONLINE\tLAST SEEN\tRELAY\tENDPOINTS")
	for _, n := range nodes {
		seen := "never"
		if !n.LastSeen.IsZero() {
			seen = n.LastSeen.Local().Format(timeLayout)
		}
		var eps []string
		for _, e := range n.Endpoints {
			eps = append(eps, e.Addr.String()+"/"+e.Kind)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n", n.Name, nodeAddrs(n), n.PublicKey, tagList(n.Tags), n.Online, seen, relayState(n), strings.Join(eps, " "))
	}
	return tw.Flush()
}

// relayState is the RELAY column: the relay a node serves and peers are
// offered, its suspension after a node reported it did not carry, or "-".
func relayState(n wire.Node) string {
	switch {
	case !n.RelaySuspendedUntil.IsZero():
		return "suspended until " + n.RelaySuspendedUntil.Local().Format(time.TimeOnly)
	case n.Relay != "":
		return n.Relay
	}
	return "-"
}

func nodeAddrs(n wire.Node) string {
	s := make([]string, len(n.Addresses))
	for i, a := range n.Addresses {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
