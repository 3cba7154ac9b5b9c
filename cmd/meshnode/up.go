package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
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
later runs need no token. Pass the token in a file (--token-file, mode 0600)
or in the MESHNODE_TOKEN environment variable: --token puts it on the
command line, where every user of the host can read it. Needs CAP_NET_ADMIN
(root) for the TUN device.

Settings come from flags, MESHNODE_* environment variables and the YAML file
(--config, default ` + config.DefaultNodeConfigFile + `), in that order of precedence.`,
		Example: `  # first run on each machine: the token in a file only root can read
  sudo install -D -m 600 /dev/stdin /etc/meshnode/token # paste the token, then Ctrl-D
  sudo meshnode up --token-file /etc/meshnode/token
  # or through the environment, off every command line
  read -rs MESHNODE_TOKEN && export MESHNODE_TOKEN      # paste the token
  sudo --preserve-env=MESHNODE_TOKEN meshnode up
  # later runs reuse the state in /var/lib/meshnode
  sudo meshnode up
  # an office gateway: routes its LAN for the mesh and offers itself as an
  # exit node, once the administrator approves ('meshnode routes approve')
  sudo meshnode up --advertise-routes 192.168.10.0/24 --advertise-exit-node
  # a laptop on hotel Wi-Fi: all its internet traffic through the office
  sudo meshnode up --exit-node office-gw
  # a second node on one host: its own interface, port, state and socket
  sudo meshnode up --interface mesh1 --listen-port 41821 \
      --state-dir /var/lib/meshnode2 --socket /run/meshnode/mesh1.sock`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings := config.DefaultNode()
			if _, err := config.Load(&settings, file, config.DefaultNodeConfigFile, cmd.Flags()); err != nil {
				return usageError{err}
			}
			if err := errors.Join(settings.Validate(), settings.CheckOS()); err != nil {
				return usageError{err}
			}
			log := newLogger(cmd.ErrOrStderr(), settings.LogLevel)
			if err := resolveToken(cmd, &settings, log); err != nil {
				return usageError{err}
			}
			progress := func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "meshnode:", msg) }
			eng, err := node.New(cmd.Context(), node.Options{Config: settings, Log: log, Progress: progress})
			if errors.Is(err, node.ErrNeedToken) || errors.Is(err, node.ErrRoutes) {
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
