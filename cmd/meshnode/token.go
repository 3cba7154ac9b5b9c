package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/coordinator"
)

const tokenAdminNote = `
With a coordinator running on --data-dir, the command goes through its admin
socket; otherwise it works on the data directory directly. Run it as the
coordinator's user (or root).`

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke join tokens",
		Long: `A join token lets a node register with the coordinator. It carries the
coordinator's URL, the fingerprint of its certificate and a secret; the
coordinator stores only the secret's hash.` + tokenAdminNote,
		Example: `  meshnode token create --data-dir /var/lib/meshnode-coordinator
  meshnode token list
  meshnode token revoke 3f2a9c1b7e00`,
	}
	cmd.AddCommand(newTokenCreateCmd(), newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var (
		file     string
		reusable bool
		expiry   time.Duration
		tags     []string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print it on the last line",
		Long: `Create a join token. It is single-use and valid for 24 hours unless told
otherwise; tags are given to every node that joins with it. The tag ` + coordinator.RelayTag + `
designates relays: a node that joins with it and sets relay_public is offered
to every peer as a relay, so give it only to machines you trust with that.
The token is printed alone on the last line of standard output.

The token carries the coordinator's public URL: --public-url, or the one in
the coordinator's config file, or the one the coordinator recorded when it
last started. Machines without IPv4 need a URL they can reach: a public_url
whose name has an AAAA record, or a token made with --public-url
https://[IPv6]:PORT.

With several coordinators on one PostgreSQL database, the token also names
every other coordinator whose lease runs, each with the pin of its own
certificate (a mntok2_ token): a node registers through any of them and
fails over among them. A token naming one coordinator is a mntok1_ token,
which every meshnode reads.` + tokenAdminNote,
		Example: `  meshnode token create --data-dir /var/lib/meshnode-coordinator
  # one token for a whole fleet, for a week
  meshnode token create --reusable --expiry 168h --tag servers
  # a token for IPv6-only machines
  meshnode token create --public-url https://[2001:db8::1]:8443
  # a token for a relay machine
  meshnode token create --tag ` + coordinator.RelayTag + `
  # in a script
  TOKEN=$(meshnode token create | tail -n 1)`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if expiry <= 0 {
				return usageError{fmt.Errorf("--expiry %v: must be a positive duration such as 24h or 30m", expiry)}
			}
			cfg, err := loadCoordinatorConfig(cmd, file)
			if err != nil {
				return err
			}
			// A URL given here (or in the config file) goes into the token
			// even while the coordinator runs with another.
			opts := coordinator.TokenOptions{Reusable: reusable, Expiry: expiry, Tags: tags, URL: cfg.PublicURL}
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			admin, err := coordinator.OpenAdmin(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer admin.Close()
			tok, err := admin.CreateToken(cmd.Context(), opts)
			if errors.Is(err, coordinator.ErrNoPublicURL) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			kind := "single-use"
			if reusable {
				kind = "reusable"
			}
			desc := fmt.Sprintf("%s, expires %s", kind, time.Now().Add(expiry).Format(timeLayout))
			if len(tags) > 0 {
				desc += ", tags " + strings.Join(tags, ",")
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Join token %s (%s) for %s.\n", tok.ID, desc, tok.URL)
			fmt.Fprintln(out, "On each machine run: meshnode up --token TOKEN")
			_, err = fmt.Fprintln(out, tok.String())
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir", "public_url", "tls_cert", "tls_key")
	cmd.Flags().BoolVar(&reusable, "reusable", false, "let any number of nodes join with this token until it expires")
	cmd.Flags().DurationVar(&expiry, "expiry", coordinator.DefaultTokenExpiry, "how long the token stays valid")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag for the nodes that join with this token (repeatable)")
	return cmd
}

func newTokenListCmd() *cobra.Command {
	return adminListCmd(&cobra.Command{
		Use:     "list",
		Short:   "List join tokens (never their secrets)",
		Long:    `List every join token, newest first, with its state.` + tokenAdminNote,
		Example: "  meshnode token list\n  meshnode token list --json | jq '.[] | select(.revoked | not)'",
	}, coordinator.Admin.Tokens, func(w io.Writer, toks []coordinator.TokenInfo) error { return printTokens(w, toks, time.Now()) })
}

func newTokenRevokeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token so no more nodes join with it",
		Long: `Revoke a join token. Nodes that already joined with it stay; remove them
with 'meshnode nodes remove'.` + tokenAdminNote,
		Example: "  meshnode token revoke 3f2a9c1b7e00",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, err := openAdmin(cmd, file)
			if err != nil {
				return err
			}
			defer admin.Close()
			err = admin.RevokeToken(cmd.Context(), args[0])
			if errors.Is(err, coordinator.ErrNotFound) {
				return usageError{fmt.Errorf("no join token with ID %q; see 'meshnode token list'", args[0])}
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Revoked join token %s.\n", args[0])
			return err
		},
	}
	addCoordinatorFlags(cmd.Flags(), &file, "data_dir")
	return cmd
}

// timeLayout prints times to the minute, with the zone.
const timeLayout = "2006-01-02 15:04 MST"

func printTokens(w io.Writer, toks []coordinator.TokenInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREUSABLE\tUSES\tCREATED\tEXPIRES\tTAGS")
	for _, t := range toks {
		state := "valid"
		switch {
		case t.Revoked:
			state = "revoked"
		case !now.Before(t.Expires):
			state = "expired"
		case !t.Reusable && t.Uses > 0:
			state = "used"
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%d\t%s\t%s\t%s\n", t.ID, state, t.Reusable, t.Uses,
			t.Created.Local().Format(timeLayout), t.Expires.Local().Format(timeLayout), strings.Join(t.Tags, ","))
	}
	return tw.Flush()
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
