package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// iperfPort is iperf3's default port, where each contender's host B
	// runs a server.
	iperfPort = 5201
	// iperfConnectMs bounds iperf3's connect (--connect-timeout): the
	// paths are up before a run starts, so a slow connect is a broken one.
	iperfConnectMs = 5000
	// serverTimeout bounds waiting for the iperf3 server to listen.
	serverTimeout = 10 * time.Second
)

// iperf3 finds iperf3, naming its Debian package when it is missing.
func iperf3() (string, error) {
	p, err := exec.LookPath("iperf3")
	if err != nil {
		return "", errors.New("iperf3 not found; install it with: apt-get install iperf3 (make deps does)")
	}
	return p, nil
}

// startIperfServer runs `iperf3 -s` in n (it lives as long as n), logging
// to name.log, and waits until it listens.
func startIperfServer(ctx context.Context, bin string, n *netlab.Netns, name string) error {
	p, err := n.Start(name, bin, "-s", "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return err
	}
	return pollWhile(ctx, p, func(ctx context.Context) error {
		out, err := n.Exec(ctx, "ss", "-Hltn", fmt.Sprintf("sport = :%d", iperfPort))
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return errors.New("iperf3 server not listening yet")
		}
		return nil
	})
}

// runIperf runs one iperf3 TCP stream from n to addr for seconds and
// returns the receiver's rate in Mbit/s.
func runIperf(ctx context.Context, bin string, n *netlab.Netns, addr netip.Addr, seconds int) (float64, error) {
	out, err := n.Exec(ctx, bin, "-c", addr.String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(seconds), "-J", "--connect-timeout", strconv.Itoa(iperfConnectMs))
	mbps, perr := parseIperf(out)
	if perr != nil {
		return 0, errors.Join(perr, err)
	}
	return mbps, nil
}

// iperfJSON is the part of iperf3's -J report the table uses.
type iperfJSON struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf reads the receiver's rate, in Mbit/s, from iperf3's -J
// output (anything before the JSON, a warning on stderr, is skipped).
func parseIperf(out string) (float64, error) {
	i := strings.IndexByte(out, '{')
	if i < 0 {
		return 0, fmt.Errorf("iperf3 printed no JSON report: %q", firstLine(out))
	}
	var r iperfJSON
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&r); err != nil {
		return 0, fmt.Errorf("iperf3 report: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 report has no received rate")
	}
	return r.End.SumReceived.BitsPerSecond / 1e6, nil
}

// firstLine is s's first line, for an error message.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
