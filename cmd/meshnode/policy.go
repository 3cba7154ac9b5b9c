package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

const policyLanguage = `
A policy file says who may reach whom; what no rule allows is denied:

  groups:                            # optional: names for lists of entries
    admins: [laptop]
  rules:
    - name: home browses the office  # optional: else the comment above the rule
      from: [tag:home]               # node names, tag:X, group:X, "*"
      to: [tag:office]               # also address prefixes (subnet routes)
      ports: [80, 443, 8000-8080]    #   and internet (through an exit node)
      proto: tcp                     # tcp, udp, icmp or any (the default)

Tags come from join tokens (meshnode token create --tag home) and from
'meshnode nodes tag NAME TAG'. Without a policy every node reaches every
other.`

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Set, read, check and test the access policy: who may reach whom",
		Long: `Administer the mesh's access policy on the coordinator host. A running
coordinator sends every node its new packet filter and peer map at once:
a node keeps in its map only the nodes it may reach or that may reach it.
` + policyLanguage + tokenAdminNote,
		Example: `  meshnode policy check office.yaml
  meshnode policy set office.yaml
  meshnode policy test laptop nas:22/tcp
  meshnode policy get > office.yaml
  meshnode policy clear`,
	}
	cmd.AddCommand(newPolicySetCmd(), newPolicyGetCmd(), newPolicyCheckCmd(), newPolicyTestCmd(), newPolicyClearCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Check a policy file: errors with their lines, and warnings",
		Long: `Check a policy file without setting it. Errors name the line and column, the
value and what to write instead; the exit code is 2 when there are any.
Warnings name entries that match no registered node (yet): a node may join
later. The nodes are read from the coordinator's data directory when there
is one (running or not); elsewhere only the file itself is checked. FILE -
reads standard input.`,
		Example: `  meshnode policy check office.yaml
  meshnode policy get | meshnode policy check -`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadCoordinatorConfig(cmd, file)
			if err != nil {
				return err
			}
			nodes, note := meshNodes(cmd, cfg)
			_, pol, err := loadPolicyFile(cmd, args[0], nodes, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if note != "" {
				fmt.Fprintln(out, note)
			}
			_, err = fmt.Fprintf(out, "%s: valid, %d rules (checked against %d registered nodes).\n", args[0], pol.Rules(), len(nodes))
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func newPolicySetCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "set FILE",
		Short: "Check a policy file and make it the mesh's access policy",
		Long: `Check FILE as 'meshnode policy check' does and store it as the newest
version of the access policy. A running coordinator sends every connected
node its new filter and peer map at once; a stopped one applies the policy
when it starts. Every version is kept: 'meshnode policy get --version N'.
FILE - reads standard input.` + tokenAdminNote,
		Example: `  meshnode policy set office.yaml
  meshnode policy get --version 3 | meshnode policy set -`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pa, err := openPolicyAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer pa.admin.Close()
			src, pol, err := loadPolicyFile(cmd, args[0], pa.nodes, pa.cfg)
			if err != nil {
				return err
			}
			info, err := pa.admin.SetPolicy(cmd.Context(), string(src))
			if errors.Is(err, coordinator.ErrInvalidPolicy) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Access policy version %d set, %d rules: a running coordinator has sent every node its filter and peer map.\n", info.Version, pol.Rules())
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func newPolicyClearCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "clear",
		Short: "Remove the access policy: every node reaches every other",
		Long: `Remove the access policy: every node reaches every other node on every port,
as before a policy was set. The removal is a version of its own; the
policies before it stay readable with 'meshnode policy get --version N'.` + tokenAdminNote,
		Example: "  meshnode policy clear",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			info, err := admin.SetPolicy(cmd.Context(), "")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Access policy removed (version %d): every node reaches every other.\n", info.Version)
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

func newPolicyGetCmd() *cobra.Command {
	var (
		file    string
		version uint64
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Print the access policy as it was set, with its version",
		Long: `Print the newest version of the access policy (or --version N) as it was
set, comments included, after a comment line with its version and time: the
output can be edited and set again.` + tokenAdminNote,
		Example: `  meshnode policy get
  meshnode policy get --version 2 > old.yaml
  meshnode policy get --json | jq .version`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			info, err := admin.Policy(cmd.Context(), version)
			out := cmd.OutOrStdout()
			switch {
			case errors.Is(err, coordinator.ErrNotFound) && version == 0:
				_, err = fmt.Fprintln(out, "No access policy was ever set: every node reaches every other.")
				return err
			case errors.Is(err, coordinator.ErrNotFound):
				return usageError{err}
			case err != nil:
				return err
			case asJSON:
				return writeJSONOut(out, info)
			}
			when := info.Created.Local().Format(timeLayout)
			if info.Text == "" {
				_, err = fmt.Fprintf(out, "# access policy version %d, %s: removed; every node reaches every other.\n", info.Version, when)
				return err
			}
			_, err = fmt.Fprintf(out, "# access policy version %d, set %s\n%s", info.Version, when, info.Text)
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	cmd.Flags().Uint64Var(&version, "version", 0, "the version to print (default: the newest)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: version, text, created")
	return cmd
}

func newPolicyTestCmd() *cobra.Command {
	var file, policyFile string
	cmd := &cobra.Command{
		Use:   "test SRC DST[:PORT][/PROTO]",
		Short: "Say whether the policy lets a node reach a destination, and by which rule",
		Long: `Say whether the access policy allows a packet from node SRC to DST, and which
rule allows it. DST is a node's name or address, or an address behind a
subnet router or on the internet; PORT is needed for tcp and udp; PROTO is
tcp (the default), udp or icmp. --file tests a policy file before it is set.` + tokenAdminNote,
		Example: `  meshnode policy test laptop nas:22/tcp
  meshnode policy test family 192.168.10.20:631
  meshnode policy test phone nas/icmp
  meshnode policy test --file new.yaml laptop '[fd6d:6573:686e::3]:443/tcp'`,
		Args: exactArgs("SRC", "DST[:PORT][/PROTO]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, _, err := policy.ParseTarget(args[1]); err != nil {
				return usageError{err}
			}
			pa, err := openPolicyAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer pa.admin.Close()
			pol, version, err := pa.testedPolicy(cmd, policyFile)
			if err != nil {
				return err
			}
			res, _ := policy.Resolve(pol, version, policyNodes(pa.nodes), network(pa.cfg))
			answer, err := res.Ask(pa.nodes, args[0], args[1])
			if err != nil {
				return usageError{err}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), answer)
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	cmd.Flags().StringVar(&policyFile, "file", "", "test this policy file instead of the one set")
	return cmd
}

// policyAdmin is the coordinator's admin API, its settings and its
// nodes: what the policy commands check and test against.
type policyAdmin struct {
	cfg   config.Coordinator
	admin coordinator.Admin
	nodes []wire.Node
}

func openPolicyAdmin(cmd *cobra.Command, file string) (*policyAdmin, error) {
	cfg, err := loadCoordinatorConfig(cmd, file)
	if err != nil {
		return nil, err
	}
	admin, err := coordinator.OpenAdmin(cmd.Context(), cfg)
	if err != nil {
		return nil, err
	}
	nodes, err := admin.Nodes(cmd.Context())
	if err != nil {
		admin.Close()
		return nil, err
	}
	return &policyAdmin{cfg: cfg, admin: admin, nodes: nodes}, nil
}

// testedPolicy is the policy 'policy test' asks: the file given, checked,
// or the newest version set (nil: none).
func (pa *policyAdmin) testedPolicy(cmd *cobra.Command, path string) (*policy.Policy, uint64, error) {
	if path != "" {
		_, pol, err := loadPolicyFile(cmd, path, pa.nodes, pa.cfg)
		return pol, 0, err
	}
	info, err := pa.admin.Policy(cmd.Context(), 0)
	switch {
	case errors.Is(err, coordinator.ErrNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	case info.Text == "":
		return nil, info.Version, nil
	}
	pol, err := policy.Parse(fmt.Sprintf("policy version %d", info.Version), []byte(info.Text))
	return pol, info.Version, err
}

// readPolicy reads a policy file ("-": standard input), up to one byte
// more than a policy may hold so that Parse can say it is too long.
func readPolicy(cmd *cobra.Command, path string) ([]byte, error) {
	var r io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usageError{fmt.Errorf("policy file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	src, err := io.ReadAll(io.LimitReader(r, policy.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return src, nil
}

// meshNodes are the registered nodes from the coordinator's data
// directory, or none and a note saying why.
func meshNodes(cmd *cobra.Command, cfg config.Coordinator) ([]wire.Node, string) {
	admin, err := coordinator.OpenAdmin(cmd.Context(), cfg)
	if err != nil {
		return nil, fmt.Sprintf("Names and tags not checked against the mesh: %v", err)
	}
	defer admin.Close()
	nodes, err := admin.Nodes(cmd.Context())
	if err != nil {
		return nil, fmt.Sprintf("Names and tags not checked against the mesh: %v", err)
	}
	return nodes, ""
}

// loadPolicyFile reads a policy file, parses it and resolves it against
// nodes, as the coordinator will: errors are usage errors naming the
// file's lines; warnings go to standard error.
func loadPolicyFile(cmd *cobra.Command, path string, nodes []wire.Node, cfg config.Coordinator) ([]byte, *policy.Policy, error) {
	src, err := readPolicy(cmd, path)
	if err != nil {
		return nil, nil, err
	}
	pol, err := policy.Parse(path, src)
	if err == nil {
		_, err = policy.Resolve(pol, 0, policyNodes(nodes), network(cfg))
	}
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%s is not a valid access policy:\n%w", path, err)}
	}
	for _, w := range pol.Warnings(policyNodes(nodes)) {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	return src, pol, nil
}

func policyNodes(nodes []wire.Node) []policy.Node {
	out := make([]policy.Node, len(nodes))
	for i, n := range nodes {
		out[i] = policy.NodeOf(n)
	}
	return out
}

func network(cfg config.Coordinator) policy.Network {
	return policy.Network{V4: cfg.Network, V6: cfg.NetworkV6}
}
