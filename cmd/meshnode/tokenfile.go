package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
)

// maxTokenFile bounds what is read of a token file: a token is a few
// hundred bytes, and a mistyped path (a log, a device) must not be read
// whole.
const maxTokenFile = 64 << 10

// resolveToken settles the join token `up` uses: read from token_file when
// that is set (token must not be then), checked in every case. A token on the command line is
// readable by every user of the host (ps, /proc/PID/cmdline), and so is a
// token file others can read: both are warned about. Errors are the user's
// to fix.
func resolveToken(cmd *cobra.Command, n *config.Node, log *slog.Logger) error {
	if n.Token != "" && n.TokenFile != "" {
		return errors.New("token and token_file are both set; set one")
	}
	source := "token"
	switch {
	case cmd.Flags().Changed("token"):
		source = "--token"
		log.Warn("the join token was given on the command line, where every user of this host can read it; " +
			"pass it with --token-file FILE or the MESHNODE_TOKEN environment variable instead")
	case n.TokenFile != "":
		tok, err := readTokenFile(n.TokenFile, log)
		if err != nil {
			return err
		}
		n.Token, source = tok, "token file "+n.TokenFile
	case os.Getenv(config.EnvName("token")) != "":
		source = config.EnvName("token")
	}
	if n.Token == "" {
		return nil
	}
	if _, err := crypto.ParseToken(n.Token); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	return nil
}

// readTokenFile returns what path holds, trimmed, warning when others can
// read the file. It may be a pipe (--token-file <(pass show mesh-token)).
func readTokenFile(path string, log *slog.Logger) (string, error) {
	const fix = "write the token printed by 'meshnode token create' into it (chmod 600), or point --token-file at the file that holds it"
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w; %s", err, fix)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("token file %s is a directory; %s", path, fix)
	}
	if perm := fi.Mode().Perm(); fi.Mode().IsRegular() && perm&0o077 != 0 {
		log.Warn("the token file can be read by other users; run chmod 600 on it", "file", path, "mode", perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("token file %s is larger than %d bytes, so it holds no token; %s", path, maxTokenFile, fix)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty; %s", path, fix)
	}
	return tok, nil
}
