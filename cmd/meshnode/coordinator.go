package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

// coordinatorGOGC is the coordinator's garbage collector target (Go's
// GOGC) unless the environment sets GOGC. Nearly all of a coordinator's
// heap is its streams' state, alive as long as the streams, so Go's
// default lets the heap (and RSS) reach about twice what is live. At half
// that headroom a 10,000-node coordinator kept 418-422 MB against 554 MB
// at GOGC=100, converging in the same time, for about a tenth more CPU
// while nodes register (bench/RESULTS.md). Prometheus makes a like choice
// (GOGC=75) for a like heap.
const coordinatorGOGC = 50

func newCoordinatorCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the coordinator: registration, peer maps, rendezvous and STUN",
		Long: `Run the coordinator in the foreground until interrupted (SIGINT or SIGTERM).

Nodes register with it using join tokens, get stable overlay addresses, keep a
stream to it for the peer map and hole-punching cues, and use its STUN server
to learn their public addresses. Run it on a host every node can reach.

All state (database, TLS certificate, keys) lives in --data-dir; with
--database postgres://USER:PASSWORD@HOST:PORT/DATABASE the database lives in
PostgreSQL instead of a SQLite file there. Without
--tls-cert it creates a self-signed certificate there once; join tokens pin
its fingerprint, so no CA is needed. --public-url is what nodes dial and what
tokens carry. With --stun-alternate (a second IP), it also listens on the
other two IP/port combinations (port+1 when the alternate gives none) so that
nodes can classify their NAT (RFC 5780). With --stun-listen-v6 (an IPv6
address of this host) STUN and the UDP relay serve IPv6 too: nodes learn
first-hand evidence of their IPv6 addresses there, and IPv6-only nodes relay
through it.

Settings come from flags, MESHNODE_* environment variables and the YAML file
(--config, default ` + config.DefaultCoordinatorConfigFile + `), in that order of precedence.`,
		Example: `  meshnode coordinator --data-dir /var/lib/meshnode-coordinator \
      --public-url https://vpn.example.com:8443
  # the database in PostgreSQL
  meshnode coordinator --public-url https://vpn.example.com:8443 \
      --database postgres://meshnode:PASSWORD@db.example.com:5432/meshnode
  # nodes also reach STUN and the relay over IPv6
  meshnode coordinator --public-url https://vpn.example.com:8443 \
      --stun-listen-v6 [2001:db8::1]:3478
  # RFC 5780 NAT classification needs two public IPs
  meshnode coordinator --public-url https://198.51.100.1:8443 \
      --stun-listen 198.51.100.1:3478 --stun-alternate 198.51.100.2:3479`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadCoordinatorConfig(cmd, file)
			if err != nil {
				return err
			}
			// The process's own settings: made here, not by the
			// coordinator package, which in-process labs run several of.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(coordinatorGOGC)
			}
			if cfg.MemoryLimit > 0 {
				debug.SetMemoryLimit(int64(cfg.MemoryLimit))
			}
			srv, err := coordinator.New(coordinator.Options{Config: cfg, Logger: newLogger(cmd.ErrOrStderr(), cfg.LogLevel)})
			if err != nil {
				return err
			}
			defer srv.Close()
			out := cmd.OutOrStdout()
			stun := cfg.STUNListen
			if cfg.STUNAlternate != "" {
				stun += " and " + cfg.STUNAlternate
			}
			if cfg.STUNListenV6 != "" {
				stun += ", IPv6 on " + cfg.STUNListenV6
			}
			fmt.Fprintf(out, "meshnode coordinator: control API on %s, STUN on %s\n", cfg.Listen, stun)
			if cfg.MetricsListen != "" {
				fmt.Fprintf(out, "metrics on http://%s%s\n", cfg.MetricsListen, wire.PathMetrics)
			}
			if cfg.MemoryLimit > 0 {
				fmt.Fprintf(out, "memory limit %v (soft: the garbage collector works harder near it)\n", cfg.MemoryLimit)
			}
			if cfg.PublicURL != "" {
				fmt.Fprintf(out, "nodes dial %s\n", cfg.PublicURL)
			}
			fmt.Fprintf(out, "certificate pin (sha256): %s\n", srv.Fingerprint())
			hint := "meshnode token create --data-dir " + cfg.DataDir
			if file != "" {
				hint += " --config " + file
			}
			fmt.Fprintf(out, "create a join token with: %s\n", hint)
			return srv.Run(cmd.Context())
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file)
	return cmd
}

// addCoordinatorFlags adds --config and the flags of the named coordinator
// settings (all of them when none is named).
func addCoordinatorFlags(fs *pflag.FlagSet, file *string, keys ...string) {
	fs.StringVar(file, "config", "", "YAML config file of the coordinator (default "+config.DefaultCoordinatorConfigFile+" if it exists)")
	defaults := config.DefaultCoordinator()
	all := pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
	config.AddFlags(all, &defaults)
	if len(keys) == 0 {
		fs.AddFlagSet(all)
		return
	}
	for _, k := range keys {
		fs.AddFlag(all.Lookup(config.FlagName(k)))
		// Commands that work on the data directory work on the database
		// too, which may live elsewhere.
		if k == "data_dir" {
			fs.AddFlag(all.Lookup(config.FlagName("database")))
		}
	}
}

// loadCoordinatorConfig reads the coordinator settings; bad ones are usage
// errors.
func loadCoordinatorConfig(cmd *cobra.Command, file string) (config.Coordinator, error) {
	cfg := config.DefaultCoordinator()
	if _, err := config.Load(&cfg, file, config.DefaultCoordinatorConfigFile, cmd.Flags()); err != nil {
		return cfg, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// openAdmin reaches the running coordinator of the configured data dir, or
// the data dir itself.
func openAdmin(cmd *cobra.Command, file string) (coordinator.Admin, error) {
	cfg, err := loadCoordinatorConfig(cmd, file)
	if err != nil {
		return nil, err
	}
	return coordinator.OpenAdmin(cmd.Context(), cfg)
}

// adminListCmd completes cmd as a command that fetches a list over the
// coordinator's admin socket and prints it as a table or, with --json, as
// JSON.
func adminListCmd[T any](cmd *cobra.Command, fetch func(coordinator.Admin, context.Context) (T, error), table func(io.Writer, T) error) *cobra.Command {
	var (
		file   string
		asJSON bool
	)
	cmd.Args = exactArgs()
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		admin, err := openAdmin(cmd, file)
		if err != nil {
			return err
		}
		defer admin.Close()
		list, err := fetch(admin, cmd.Context())
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSONOut(cmd.OutOrStdout(), list)
		}
		return table(cmd.OutOrStdout(), list)
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}
