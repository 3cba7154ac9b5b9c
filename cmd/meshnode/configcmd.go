package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check configuration files and show the effective settings",
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	var file string
	var coordinator bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the config and print the effective settings",
		Long: `Load settings as 'meshnode up' (or, with --coordinator, 'meshnode
coordinator') would: defaults, then the YAML file, then MESHNODE_*
environment variables. Unknown keys and bad values are reported with the key,
the value and what is allowed; the exit code is then 2.`,
		Example: `  meshnode config check
  meshnode config check --config ./meshnode.yaml
  meshnode config check --coordinator --config /etc/meshnode/coordinator.yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if coordinator {
				c := config.DefaultCoordinator()
				used, err := config.Load(&c, file, config.DefaultCoordinatorConfigFile, nil)
				if err != nil {
					return usageError{err}
				}
				if err := c.Validate(); err != nil {
					return usageError{err}
				}
				return printSettings(cmd.OutOrStdout(), used, &c)
			}
			n := config.DefaultNode()
			used, err := config.Load(&n, file, config.DefaultNodeConfigFile, nil)
			if err != nil {
				return usageError{err}
			}
			if err := n.Validate(); err != nil {
				return usageError{err}
			}
			if n.Token != "" {
				n.Token = "(set, hidden)"
			}
			return printSettings(cmd.OutOrStdout(), used, &n)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML file to check (default: the standard path if it exists)")
	cmd.Flags().BoolVar(&coordinator, "coordinator", false, "check coordinator settings instead of node settings")
	return cmd
}

func printSettings(w io.Writer, used string, settings any) error {
	if used == "" {
		used = "(no file; defaults and environment)"
	}
	fmt.Fprintf(w, "config OK: %s\n\n", used)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, d := range config.Describe(settings) {
		fmt.Fprintf(tw, "%s\t%s\t# %s\n", d.Key, d.Value, d.Desc)
	}
	return tw.Flush()
}
