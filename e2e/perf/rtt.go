package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// rttEchoes is how many echoes one idle RTT measurement sends; its
	// figure is their median, so a scheduling hiccup on the shared cores
	// doesn't move it.
	rttEchoes = 30
	// rttGap spaces them (ping -i, in seconds; below 0.2 needs root,
	// which the lab has): 10 ms, far apart enough that each echo finds
	// an idle path.
	rttGap = "0.01"
	// rttDeadline bounds one measurement (ping -w, s): 30 echoes take
	// 0.3 s; the rest is room for a slow machine.
	rttDeadline = 5
)

// idleRTT pings addr from n rttEchoes times, rttGap apart, and returns the
// median round-trip time of the replies. It runs between iperf3 runs,
// never during one: the idle path's latency.
func idleRTT(ctx context.Context, n *netlab.Netns, ping string, addr netip.Addr) (time.Duration, error) {
	out, err := n.Exec(ctx, ping, "-n", "-c", strconv.Itoa(rttEchoes), "-i", rttGap, "-w", strconv.Itoa(rttDeadline), addr.String())
	rtts, perr := parseRTTs(out)
	if perr != nil {
		return 0, fmt.Errorf("ping %v from %s: %w", addr, n.Name, errors.Join(perr, err))
	}
	xs := make([]float64, len(rtts))
	for i, d := range rtts {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs)), nil
}

// rttLine is a reply in iputils ping's output, with or without -D's
// timestamp: "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.046 ms"
// (more digits before the point, fewer after it, on slower paths). A
// duplicate ends in "(DUP!)".
var rttLine = regexp.MustCompile(`(?m)^(?:\[[\d.]+\] )?\d+ bytes from .*\btime=(\d+(?:\.\d+)?) ms( \(DUP!\))?\s*$`)

// parseRTTs reads every reply's round-trip time from ping's output,
// duplicates left out (they answer an echo already counted).
func parseRTTs(out string) ([]time.Duration, error) {
	var rtts []time.Duration
	for _, m := range rttLine.FindAllStringSubmatch(out, -1) {
		if m[2] != "" {
			continue
		}
		ms, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return nil, fmt.Errorf("reply time %q: %w", m[1], err)
		}
		rtts = append(rtts, time.Duration(math.Round(ms*float64(time.Millisecond))))
	}
	if len(rtts) == 0 {
		return nil, fmt.Errorf("no reply within %d s", rttDeadline)
	}
	return rtts, nil
}
