package perf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// pingGap spaces the echoes of a first-ping loop (ping -i): the
	// resolution of the time to first ping.
	pingGap = "0.05"
	// pingDeadline bounds a first-ping loop in seconds (ping -w), within
	// netlab's 30 s command timeout; a path slower than that fails.
	pingDeadline = 25
	// startTimeout bounds building a site and starting a node.
	startTimeout = time.Minute
)

// firstReply pings addr from n, an echo every pingGap, until the first
// reply or pingDeadline, and returns when the reply came.
func firstReply(ctx context.Context, n *netlab.Netns, ping string, addr netip.Addr) (time.Time, error) {
	out, err := n.Exec(ctx, ping, "-D", "-n", "-i", pingGap, "-c", "1", "-w", strconv.Itoa(pingDeadline), addr.String())
	t, perr := parseReplyTime(out)
	if perr != nil {
		return time.Time{}, fmt.Errorf("ping %v from %s: %w", addr, n.Name, errors.Join(perr, err))
	}
	return t, nil
}

// replyLine is a reply in `ping -D` output: "[SECONDS.MICROS] 64 bytes from".
var replyLine = regexp.MustCompile(`(?m)^\[(\d+)\.(\d{1,9})\] \d+ bytes from `)

// parseReplyTime reads the time of the first reply from `ping -D` output.
func parseReplyTime(out string) (time.Time, error) {
	m := replyLine.FindStringSubmatch(out)
	if m == nil {
		return time.Time{}, fmt.Errorf("no reply within %d s", pingDeadline)
	}
	sec, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reply time %q: %w", m[0], err)
	}
	frac := m[2] + strings.Repeat("0", 9-len(m[2]))
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reply time %q: %w", m[0], err)
	}
	return time.Unix(sec, ns), nil
}

// measurePair measures meshnode's time to first ping on one NAT pair,
// runs times: the first node comes up and settles (waitSettled: its NAT
// must pass UDP) and stays up; each run starts a second node on a new
// site, and takes it down and its site away after.
func measurePair(ctx context.Context, env Env, k int, p Pair, runs int) *PingRow {
	row := &PingRow{Pair: p}
	fail := func(err error) *PingRow {
		row.Errs = append(row.Errs, err.Error())
		return row
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sa, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: p.First})
	if err != nil {
		return fail(err)
	}
	defer sa.Close()
	a, err := env.Lab.StartNode(sctx, sa.Hosts[0], netlab.NodeConfig{Name: fmt.Sprintf("fp%da", k), Token: env.Token})
	if err != nil {
		return fail(err)
	}
	defer env.leave(a)
	if err := waitSettled(ctx, a); err != nil {
		return fail(err)
	}
	for r := range runs {
		d, err := firstPingRun(ctx, env, a, fmt.Sprintf("fp%db%d", k, r), p.Second)
		if err != nil {
			row.Errs = append(row.Errs, fmt.Sprintf("run %d: %v", r+1, err))
			continue
		}
		row.Times = append(row.Times, d)
	}
	return row
}

// waitSettled polls until n is connected to the coordinator and knows
// its public address (STUN has answered): a first node that is up and
// quiet, so the clock measures the second node alone.
func waitSettled(ctx context.Context, n *netlab.Node) error {
	return netlab.Poll(ctx, startTimeout, netlab.PollInterval, func(ctx context.Context) error {
		st, err := n.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Coordinator.Connected || st.Self.NAT.Public == "" {
			return fmt.Errorf("%s: connected %v, public address %q; want connected and one", n.Name, st.Coordinator.Connected, st.Self.NAT.Public)
		}
		return nil
	})
}

// firstPingRun starts a node named name behind a new site of kind and
// returns how long after its start the first ping from a came back.
func firstPingRun(ctx context.Context, env Env, a *netlab.Node, name string, kind netlab.Kind) (time.Duration, error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sb, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: kind})
	if err != nil {
		return 0, err
	}
	defer sb.Close()
	start := time.Now()
	b, err := env.Lab.StartNode(sctx, sb.Hosts[0], netlab.NodeConfig{Name: name, Token: env.Token})
	if err != nil {
		return 0, err
	}
	defer env.leave(b)
	st, err := b.Status(sctx)
	if err != nil {
		return 0, err
	}
	reply, err := firstReply(ctx, a.Host.NS, env.Lab.Tools().Ping, st.Me().V4())
	if err != nil {
		return 0, err
	}
	return reply.Sub(start), nil
}
