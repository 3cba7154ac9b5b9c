package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node"
)

func newUpCmd() *cobra.Command {
	defaults := config.DefaultNode()
	var file string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Join this machine to the mesh and keep it connected",
		Long: `Run the node in the foreground until interrupted (or 'meshnode down').

The first run needs a join token from the coordinator ('meshnode token
create'); the node then keeps its key and registration in --state-dir and
later runs need no token. Needs CAP_NET_ADMIN (root) for the TUN device.

Settings come from flags, MESHNODE_* environment variables and the YAML file
(--config, default ` + config.DefaultNodeConfigFile + `), in that order of precedence.`,
		Example: `  # first run on each machine
  sudo meshnode up --token mntok1_...
  # later runs reuse the state in /var/lib/meshnode
  sudo meshnode up
  # a second node on one host: its own interface, port, state and socket
  sudo meshnode up --interface mesh1 --listen-port 41821 \
      --state-dir /var/lib/meshnode2 --socket /run/meshnode/mesh1.sock`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings := config.DefaultNode()
			if _, err := config.Load(&settings, file, config.DefaultNodeConfigFile, cmd.Flags()); err != nil {
				return usageError{err}
			}
			if err := settings.Validate(); err != nil {
				return usageError{err}
			}
			if settings.Token != "" {
				if _, err := crypto.ParseToken(settings.Token); err != nil {
					return usageError{fmt.Errorf("--token: %w", err)}
				}
			}
			log := newLogger(cmd.ErrOrStderr(), settings.LogLevel)
			progress := func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "meshnode:", msg) }
			eng, err := node.New(cmd.Context(), node.Options{Config: settings, Log: log, Progress: progress})
			if errors.Is(err, node.ErrNeedToken) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			return eng.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML config file (default "+config.DefaultNodeConfigFile+" if it exists)")
	config.AddFlags(cmd.Flags(), &defaults)
	return cmd
}
