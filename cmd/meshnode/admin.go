package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/ui"
)

func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Log in to the coordinator's web page",
	}
	cmd.AddCommand(newAdminLoginCmd())
	return cmd
}

func newAdminLoginCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time link that logs a browser in to the web page",
		Long: fmt.Sprintf(`Ask the coordinator running on --data-dir, through its admin socket, for a
one-time link to its web page (ui_listen). The link works once, within %v,
and starts a session of %v in the browser that opens it. Run it as the
coordinator's user (or root). On a remote coordinator, forward the page's
loopback port first: ssh -L 9481:127.0.0.1:9481 coordinator-host.`, ui.LinkExpiry, ui.SessionExpiry),
		Example: "  meshnode admin login --data-dir /var/lib/meshnode-coordinator",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadCoordinatorConfig(cmd, file)
			if err != nil {
				return err
			}
			link, err := coordinator.UILoginLink(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), link)
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}
