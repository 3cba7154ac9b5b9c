package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/node/localapi"
)

func newDNSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Show the resolver of the mesh's names",
		Long: `Every node answers the mesh's names, NAME.<domain> (mesh.internal unless the
coordinator's dns_domain says otherwise), with a resolver on its overlay
addresses, port 53, and points the OS at it for that domain only.`,
		Example: "  meshnode dns status",
	}
	cmd.AddCommand(newDNSStatusCmd())
	return cmd
}

func newDNSStatusCmd() *cobra.Command {
	var socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the resolver: domain, addresses, how the OS asks it, upstreams, names",
		Long: `Show what the node's resolver is configured with: the mesh's domain, the
overlay addresses it answers on (UDP and TCP port 53), how the OS is pointed
at it (systemd-resolved, /etc/resolver on macOS, a managed /etc/resolv.conf,
or not at all, and why), the upstream resolvers it forwards every other name
to, every name it answers, and its counters.

--json prints the same for scripts: enabled, domain, listen, listen_error,
os, os_note, upstreams, records[] with name, addresses, kind (self, peer or
extra), and counters.`,
		Example: "  meshnode dns status\n  meshnode dns status --json | jq -r '.records[].name'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := newLocalClient(socket).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st.DNS)
			}
			return printDNS(cmd.OutOrStdout(), st.DNS)
		},
	}
	addSocketFlag(cmd, &socket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

// printDNS is `meshnode dns status`.
func printDNS(w io.Writer, d localapi.DNS) error {
	if !d.Enabled {
		_, err := fmt.Fprintf(w, "resolver  off: %s\n", d.OSNote)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "domain\t%s\n", d.Domain)
	fmt.Fprintf(tw, "resolver\t%s\n", resolverLine(d))
	how := d.OS
	if d.OSNote != "" {
		how += ": " + d.OSNote
	}
	fmt.Fprintf(tw, "os\t%s\n", how)
	ups := strings.Join(d.Upstreams, " ")
	if ups == "" {
		ups = "none: names outside the mesh get SERVFAIL"
	}
	fmt.Fprintf(tw, "upstreams\t%s\n", ups)
	fmt.Fprintf(tw, "counters\t%s\n", counters(d.Counters))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tKIND")
	for _, r := range d.Records {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, joinAddrs(r.Addresses), r.Kind)
	}
	return tw.Flush()
}

// resolverLine is where the resolver answers, and where it could not.
func resolverLine(d localapi.DNS) string {
	s := strings.Join(d.Listen, " ") + " (UDP and TCP)"
	if len(d.Listen) == 0 {
		s = "not listening"
	}
	if d.ListenError != "" {
		s += "; " + d.ListenError
	}
	return s
}

// counters is "name value" pairs in name order.
func counters(c map[string]uint64) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

// dnsLine is status's summary of the resolver.
func dnsLine(d localapi.DNS, self string) string {
	switch {
	case !d.Enabled:
		return "dns off (accept_dns false)"
	case d.OS == "none":
		return fmt.Sprintf("dns %s.%s: resolver %s; the OS does not ask it (see 'meshnode dns status')", self, d.Domain, resolverLine(d))
	}
	return fmt.Sprintf("dns %s.%s: resolver %s, asked through %s", self, d.Domain, resolverLine(d), d.OS)
}
