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

// firstNode brings a contender's first node of a pair up on host a,
// named name, and waits until it has settled. The second it returns
// starts a second node on host b and returns how long after that start
// the first reply to the first node's pings (every pingGap) came; down
// takes the first node (and what it needs) away.
type firstNode func(ctx context.Context, a *netlab.Host, name string) (second secondNode, down func(), err error)

// secondNode is one run of a pair: see firstNode.
type secondNode func(ctx context.Context, b *netlab.Host, name string) (time.Duration, error)

// measurePair measures a contender's time to first ping on one NAT pair,
// runs times: the first node (named prefix+"a") comes up behind a site of
// p.First and stays up; each run starts a second node (prefix+"b"+run)
// behind a new site of p.Second, which goes away after the run.
func measurePair(ctx context.Context, env Env, p Pair, runs int, prefix string, first firstNode) FirstPings {
	var fp FirstPings
	fail := func(err error) FirstPings {
		fp.Errs = append(fp.Errs, err.Error())
		return fp
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sa, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: p.First})
	if err != nil {
		return fail(err)
	}
	defer env.closeSite(sa)
	second, down, err := first(ctx, sa.Hosts[0], prefix+"a")
	if err != nil {
		return fail(err)
	}
	defer down()
	for r := range runs {
		d, err := pairRun(ctx, env, p.Second, fmt.Sprintf("%sb%d", prefix, r), second)
		if err != nil {
			fp.Errs = append(fp.Errs, fmt.Sprintf("run %d: %v", r+1, err))
			continue
		}
		fp.Times = append(fp.Times, d)
	}
	return fp
}

// pairRun runs second on a new site of kind, removed after.
func pairRun(ctx context.Context, env Env, kind netlab.Kind, name string, second secondNode) (time.Duration, error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sb, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: kind})
	if err != nil {
		return 0, err
	}
	defer env.closeSite(sb)
	return second(ctx, sb.Hosts[0], name)
}

// meshnodeFirst is meshnode's first node: up and settled (waitSettled:
// its NAT must pass UDP). Each second node leaves the coordinator after
// its run.
func meshnodeFirst(env Env) firstNode {
	return func(ctx context.Context, h *netlab.Host, name string) (secondNode, func(), error) {
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		a, err := env.Lab.StartNode(sctx, h, netlab.NodeConfig{Name: name, Token: env.Token})
		if err != nil {
			return nil, nil, err
		}
		if err := waitSettled(ctx, a); err != nil {
			env.leave(a)
			return nil, nil, err
		}
		second := func(ctx context.Context, h *netlab.Host, name string) (time.Duration, error) {
			sctx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			start := time.Now()
			b, err := env.Lab.StartNode(sctx, h, netlab.NodeConfig{Name: name, Token: env.Token})
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
		return second, func() { env.leave(a) }, nil
	}
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
