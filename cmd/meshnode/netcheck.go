package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node"
	"github.com/meshnode/meshnode/node/discovery"
)

// netcheckTimeout bounds the whole run. Every step has its own bound; the
// slowest case (a silent primary, then a second server whose alternate
// address is filtered) needs about 25 s.
const netcheckTimeout = 45 * time.Second

func newNetcheckCmd() *cobra.Command {
	var asJSON bool
	var stunServer, stateDir string
	cmd := &cobra.Command{
		Use:   "netcheck",
		Short: "Test this network: UDP, NAT behaviour, hairpinning and port mapping",
		Long: `Test what this network allows, over a socket of its own (a running node is
not disturbed): whether UDP reaches the coordinator's STUN server, the public
address, the NAT's mapping and filtering behaviour (RFC 5780, using the
server's alternate address), the port allocation pattern, hairpinning,
latency, and whether the gateway answers NAT-PMP, PCP or UPnP.

Without --stun it uses this node's coordinator, from <state-dir>/state.json.
Mapping and filtering need a coordinator started with --stun-alternate.

The last line is a verdict: whether peers are likely to connect directly or
through the relay. --json prints the report for scripts: udp, public_address,
mapping, filtering, port_allocation, port_step, hairpin, latency_ms,
stun_server, port_mapping{nat_pmp,pcp,upnp,gateway} and notes.`,
		Example: `  # against this node's coordinator
  sudo meshnode netcheck
  # against any STUN server, before joining
  meshnode netcheck --stun coord.example.com:3478
  meshnode netcheck --json | jq -r .mapping`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("netcheck takes no arguments, got %q; give a server with --stun HOST:PORT", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			servers := []string{stunServer}
			if !cmd.Flags().Changed("stun") {
				var err error
				if servers, err = stateSTUN(stateDir); err != nil {
					return err
				}
			} else if err := checkHostPort(stunServer); err != nil {
				return usageError{fmt.Errorf("--stun %q: %v; give HOST:PORT, e.g. --stun coord.example.com:3478", stunServer, err)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), netcheckTimeout)
			defer cancel()
			if err := anyResolves(ctx, servers); err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "meshnode: testing against %s; this takes a few seconds\n", strings.Join(servers, ", "))
			}
			rep := discovery.Netcheck(ctx, discovery.NetcheckOptions{Servers: servers})
			if err := cmd.Context().Err(); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printNetcheck(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON for scripts")
	cmd.Flags().StringVar(&stunServer, "stun", "", "STUN server HOST:PORT to test against (default: this node's coordinator)")
	cmd.Flags().StringVar(&stateDir, "state-dir", config.DefaultNode().StateDir, "the node's state directory, for its coordinator's STUN servers")
	return cmd
}

// stateSTUN reads the coordinator's STUN servers, primary first, from the
// node's state.
func stateSTUN(dir string) ([]string, error) {
	path := filepath.Join(dir, node.StateFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, usageError{fmt.Errorf("no STUN server to test against: %s does not exist (this node has not joined a mesh, or its state is elsewhere: --state-dir); give a server with --stun HOST:PORT", path)}
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("read %s: %w; run as root (sudo meshnode netcheck) or give a server with --stun HOST:PORT", path, err)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var st node.State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); give a server with --stun HOST:PORT", path, err)
	}
	if len(st.STUN) == 0 {
		return nil, usageError{fmt.Errorf("%s lists no STUN servers (the node has not received its coordinator's yet); run 'meshnode up' once, or give a server with --stun HOST:PORT", path)}
	}
	return st.STUN, nil
}

// anyResolves checks that a server resolves, so that a DNS failure isn't
// reported as blocked UDP.
func anyResolves(ctx context.Context, servers []string) error {
	var errs []error
	for _, s := range servers {
		_, err := discovery.ResolveSTUN(ctx, s)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("STUN server %s: %w", s, err))
	}
	return fmt.Errorf("no STUN server resolves; check the name and DNS, or give an address with --stun IP:PORT: %w", errors.Join(errs...))
}

// checkHostPort says what is wrong with a HOST:PORT, if anything.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not HOST:PORT")
	}
	if host == "" {
		return errors.New("no host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func printNetcheck(w io.Writer, r discovery.Report) {
	if r.STUNServer != "" {
		fmt.Fprintf(w, "Netcheck against %s\n\n", r.STUNServer)
	} else {
		fmt.Fprint(w, "Netcheck: no STUN server answered\n\n")
	}
	row := func(k, v string) { fmt.Fprintf(w, "  %-17s %s\n", k+":", v) }
	row("UDP", yesNo(r.UDP))
	if r.UDP {
		row("Public address", r.PublicAddress)
		row("NAT mapping", string(r.Mapping))
		row("NAT filtering", string(r.Filtering))
		alloc := string(r.PortAllocation)
		if r.PortStep > 0 {
			alloc += fmt.Sprintf(" (step %d)", r.PortStep)
		}
		row("Port allocation", alloc)
		hairpin := "unknown"
		if r.Hairpin != nil {
			hairpin = yesNo(*r.Hairpin)
		}
		row("Hairpinning", hairpin)
		if r.LatencyMs != nil {
			row("Latency", fmt.Sprintf("%.1f ms", *r.LatencyMs))
		}
	}
	pm := fmt.Sprintf("NAT-PMP %s, PCP %s, UPnP %s", yesNo(r.PortMapping.NATPMP), yesNo(r.PortMapping.PCP), yesNo(r.PortMapping.UPnP))
	if r.PortMapping.Gateway != "" {
		pm += " (gateway " + r.PortMapping.Gateway + ")"
	}
	row("Port mapping", pm)
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "  note:", n)
		}
	}
	fmt.Fprintf(w, "\n%s\n", netcheckVerdict(r))
}

// netcheckVerdict sums the report up in one line: how peers will reach
// this host. Mapping decides it (RFC 4787 §4.1): with endpoint-independent
// mapping every peer learns the one public address; with dependent
// mapping only peers that can answer from anywhere get through directly.
func netcheckVerdict(r discovery.Report) string {
	if !r.UDP {
		return "UDP blocked: traffic will use the TCP relay"
	}
	switch r.Mapping {
	case wire.MappingNone:
		if r.Filtering == wire.FilteringNone {
			return "Direct connections: likely with all peers (no NAT)"
		}
		return "Direct connections: likely with most peers (no NAT; a firewall filters, so peers get through by hole punching)"
	case wire.MappingEndpointIndependent:
		return "Direct connections: likely with most peers (endpoint-independent mapping)"
	case wire.MappingAddressDependent:
		return "Moderate NAT (address-dependent mapping): direct with most peers; peers behind hard NATs will use the relay"
	case wire.MappingAddressPortDependent:
		switch r.PortAllocation {
		case wire.PortAllocSequential:
			return "Hard NAT (address-and-port-dependent mapping, sequential ports): peers predict the next ports, so direct connections often work; otherwise the relay"
		case wire.PortAllocRandom:
			return "Hard NAT (address-and-port-dependent mapping, random ports): peers behind hard NATs will use the relay"
		}
		return "Hard NAT (address-and-port-dependent mapping): peers behind hard NATs will use the relay"
	}
	return "NAT type unknown (see the notes): direct connections may work; the relay always does"
}
