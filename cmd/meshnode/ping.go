package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// pingInterval spaces user pings, as ping(8) does.
const pingInterval = time.Second

func newPingCmd() *cobra.Command {
	var socket string
	var count int
	cmd := &cobra.Command{
		Use:   "ping NAME|IP|KEY",
		Short: "Ping a peer with discovery messages and show the path and round-trip time",
		Long: `Send discovery pings (not ICMP) to a peer over its current path and print
the path (direct or relay), the endpoint and the round-trip time of each reply.
It tests meshnode's own path, independent of the peer's firewall. NAME may be
the peer's name in the mesh's DNS too, NAME.<domain>.`,
		Example: "  meshnode ping office\n  meshnode ping office.mesh.internal\n  meshnode ping 100.88.0.2 --count 10",
		Args:    exactArgs("NAME|IP|KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 {
				return usageError{fmt.Errorf("--count %d: must be at least 1", count)}
			}
			c := newLocalClient(socket)
			answered := 0
			var lastErr error
			for i := range count {
				if i > 0 {
					select {
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					case <-time.After(pingInterval):
					}
				}
				r, err := c.Ping(cmd.Context(), args[0])
				if err != nil {
					lastErr = err
					fmt.Fprintf(cmd.OutOrStdout(), "no reply from %s: %v\n", args[0], err)
					continue
				}
				answered++
				fmt.Fprintf(cmd.OutOrStdout(), "pong from %s via %s %s in %.2fms\n", r.Peer, r.Path, r.Endpoint, r.LatencyMs)
			}
			if answered == 0 {
				return fmt.Errorf("%s did not answer %d pings: %w", args[0], count, lastErr)
			}
			return nil
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().IntVarP(&count, "count", "c", 4, "number of pings")
	return cmd
}
