package perf

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sample is one iperf3 run.
type Sample struct {
	Round int // from 0
	Mbps  float64
	// CPU is the contender's processes' CPU time over the run, in percent
	// of one core, both ends summed; HasCPU is false for the raw path.
	CPU    float64
	HasCPU bool
}

// Row is one contender: its samples on each wire, and what failed.
type Row struct {
	Kind    kind
	Name    string
	Samples [2][]Sample // by wire
	// RTTs are the idle round-trip times by wire, one a round: the median
	// of that round's echoes.
	RTTs [2][]time.Duration
	Errs []string
}

// FirstPings are one contender's times to first ping on one NAT pair, and
// the runs that failed.
type FirstPings struct {
	Times []time.Duration
	Errs  []string
}

// PingRow is one NAT pair's times to first ping: meshnode's, and Nebula's
// when it was measured on the pair (nil otherwise).
type PingRow struct {
	Pair     Pair
	Meshnode FirstPings
	Nebula   *FirstPings
}

// Report is one comparison's results and the conditions they were
// measured in.
type Report struct {
	Date               time.Time
	Version            string // meshnode's
	WireguardGoVersion string
	BeforeVersion      string // the meshnode measured as "before", empty when none
	Kernel, CPU        string
	CPUs               int
	Load               string // the load average at the start
	Seconds, Runs      int
	PairRuns           int
	Nebula             string // the binary measured, empty when none
	Rows               []*Row
	Pings              []*PingRow
}

func newReport(env Env, plan Plan) *Report {
	kernel, cpu, cpus, load := machine()
	r := &Report{
		Date: time.Now().UTC(), Version: env.Version,
		Kernel: kernel, CPU: cpu, CPUs: cpus, Load: load,
		Seconds: plan.Seconds, Runs: plan.Runs, PairRuns: plan.PairRuns,
	}
	if plan.Nebula != nil {
		r.Nebula = plan.Nebula.Nebula
	}
	return r
}

// Failures lists every failed setup or run, for the test to report.
func (r *Report) Failures() []string {
	var out []string
	for _, row := range r.Rows {
		for _, e := range row.Errs {
			out = append(out, row.Name+": "+e)
		}
	}
	for _, p := range r.Pings {
		for _, e := range p.Meshnode.Errs {
			out = append(out, "time to first ping, "+p.Pair.Name+": "+e)
		}
		if p.Nebula != nil {
			for _, e := range p.Nebula.Errs {
				out = append(out, "time to first ping (Nebula), "+p.Pair.Name+": "+e)
			}
		}
	}
	return out
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

// medians are a row's median rate and CPU on wire w; NaN where there is
// no sample.
func (row *Row) medians(w wire) (mbps, cpu float64) {
	var rates, cpus []float64
	for _, s := range row.Samples[w] {
		rates = append(rates, s.Mbps)
		if s.HasCPU {
			cpus = append(cpus, s.CPU)
		}
	}
	return median(rates), median(cpus)
}

// durationMedian is the middle of ds; NaN for none.
func durationMedian(ds []time.Duration) float64 {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return median(xs)
}

// overhead is row's median idle RTT on wire w minus raw's, in
// nanoseconds; NaN when either is missing.
func overhead(row, raw *Row, w wire) float64 {
	if row == nil || raw == nil {
		return math.NaN()
	}
	return durationMedian(row.RTTs[w]) - durationMedian(raw.RTTs[w])
}

// find returns the row of kind k, or nil.
func (r *Report) find(k kind) *Row {
	for _, row := range r.Rows {
		if row.Kind == k {
			return row
		}
	}
	return nil
}

// ratio renders x/base as "0.71×", or "–" when either is missing.
func ratio(x float64, base *Row, w wire) string {
	if base == nil {
		return "–"
	}
	b, _ := base.medians(w)
	if math.IsNaN(x) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/b)
}

// thousands renders a rate as a whole number with thousands separators,
// or "failed" when there is none.
func thousands(x float64) string {
	if math.IsNaN(x) {
		return "failed"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// percent renders a CPU share, "–" when not measured.
func percent(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", x)
}

// contenderTable renders a Markdown table with a row per contender and
// the same columns for each wire: head is their header, a format with %s
// for the wire's name, and cells renders them for a row on a wire.
func (r *Report) contenderTable(head string, cells func(row *Row, w wire) string) string {
	var b strings.Builder
	b.WriteString("| contender |")
	for _, w := range wires {
		fmt.Fprintf(&b, head, w)
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", strings.Count(head, "|")*len(wires)) + "\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s |", row.Name)
		for _, w := range wires {
			b.WriteString(cells(row, w))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ThroughputTable renders the contenders × wires table in Markdown.
func (r *Report) ThroughputTable() string {
	neb, wg := r.find(kindNebula), r.find(kindWireguardGo)
	return r.contenderTable(" %s, Mbit/s | × Nebula | × wireguard-go | CPU |", func(row *Row, w wire) string {
		mbps, cpu := row.medians(w)
		return fmt.Sprintf(" %s | %s | %s | %s |", thousands(mbps), ratio(mbps, neb, w), ratio(mbps, wg, w), percent(cpu))
	})
}

// micros renders a time in nanoseconds as whole microseconds, signed
// when sign is set; "failed" when there is none.
func micros(ns float64, sign bool) string {
	if math.IsNaN(ns) {
		return "failed"
	}
	if sign {
		return fmt.Sprintf("%+.0f", ns/1e3)
	}
	return fmt.Sprintf("%.0f", ns/1e3)
}

// LatencyTable renders the idle round-trip times in Markdown: each
// contender's median on each wire, its overhead over the raw path, and
// that overhead over stock wireguard-go's (the goal: at most 1.00×).
func (r *Report) LatencyTable() string {
	raw, wg := r.find(kindRaw), r.find(kindWireguardGo)
	return r.contenderTable(" %s, RTT µs | over raw, µs | × wireguard-go's overhead |", func(row *Row, w wire) string {
		over, rel := "–", "–"
		if row.Kind != kindRaw {
			o := overhead(row, raw, w)
			over = micros(o, true)
			if base := overhead(wg, raw, w); !math.IsNaN(o) && base > 0 {
				rel = fmt.Sprintf("%.2f×", o/base)
			}
		}
		return fmt.Sprintf(" %s | %s | %s |", micros(durationMedian(row.RTTs[w]), false), over, rel)
	})
}

// seconds renders durations as "0.31 s".
func seconds(ds ...time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(parts, ", ") + " s"
}

// cells renders fp as a table's median and runs cells; "–" for both when
// fp is nil (not measured).
func (fp *FirstPings) cells() (med, runs string) {
	if fp == nil {
		return "–", "–"
	}
	med, runs = "failed", "–"
	if len(fp.Times) > 0 {
		med = seconds(time.Duration(durationMedian(fp.Times)))
		runs = seconds(fp.Times...)
	}
	if n := len(fp.Errs); n > 0 {
		runs += fmt.Sprintf(" (%d failed)", n)
	}
	return med, runs
}

// PingTable renders the time-to-first-ping table in Markdown.
func (r *Report) PingTable() string {
	var b strings.Builder
	b.WriteString("| pair | first node (pings) | second node (starts the clock) | meshnode, median | runs | Nebula, median | runs |\n" +
		"|---|---|---|--:|---|--:|---|\n")
	for _, p := range r.Pings {
		med, runs := p.Meshnode.cells()
		nmed, nruns := p.Nebula.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", p.Pair.Name, p.Pair.First, p.Pair.Second, med, runs, nmed, nruns)
	}
	return b.String()
}

// runsList lists every run's rate and idle RTT, so a median's spread is
// visible.
func (r *Report) runsList() string {
	var b strings.Builder
	for _, row := range r.Rows {
		for _, w := range wires {
			var parts []string
			if len(row.Samples[w]) > 0 {
				rates := make([]string, len(row.Samples[w]))
				for i, s := range row.Samples[w] {
					rates[i] = thousands(s.Mbps)
				}
				parts = append(parts, strings.Join(rates, ", ")+" Mbit/s")
			}
			if len(row.RTTs[w]) > 0 {
				rtts := make([]string, len(row.RTTs[w]))
				for i, d := range row.RTTs[w] {
					rtts[i] = micros(float64(d), false)
				}
				parts = append(parts, "idle RTT "+strings.Join(rtts, ", ")+" µs")
			}
			if len(parts) > 0 {
				fmt.Fprintf(&b, "- %s, %s: %s\n", row.Name, w, strings.Join(parts, "; "))
			}
		}
	}
	return b.String()
}

// roundRatios are row's rate over base's in each round where both ran on
// wire w. A round runs every contender within a minute or so, so the
// machine's drift between rounds (seen here at ±15 % from one round to
// the next) cancels in each ratio, as it does not between two medians.
func roundRatios(row, base *Row, w wire) []float64 {
	if row == nil || base == nil {
		return nil
	}
	var out []float64
	for _, s := range row.Samples[w] {
		i := slices.IndexFunc(base.Samples[w], func(b Sample) bool { return b.Round == s.Round })
		if i >= 0 && base.Samples[w][i].Mbps > 0 {
			out = append(out, s.Mbps/base.Samples[w][i].Mbps)
		}
	}
	return out
}

// pairedRatio renders the median of roundRatios and their range, as
// "1.08× (0.96–1.21× in 5 rounds)", or "–" when no round has both.
func pairedRatio(row, base *Row, w wire) string {
	rs := roundRatios(row, base, w)
	if len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f× in %d rounds)", median(rs), slices.Min(rs), slices.Max(rs), len(rs))
}

// pairedLines are meshnode's round-by-round ratios over Nebula and over
// the before binary, where they ran, one Markdown list item each.
func (r *Report) pairedLines() string {
	m := r.find(kindMeshnode)
	if m == nil {
		return ""
	}
	var b strings.Builder
	for _, base := range []*Row{r.find(kindNebula), r.find(kindMeshnodeBefore)} {
		if base == nil {
			continue
		}
		fmt.Fprintf(&b, "- meshnode ÷ %s: %s on the %s, %s on the %s\n", base.Name,
			pairedRatio(m, base, offloadWire), offloadWire, pairedRatio(m, base, packetWire), packetWire)
	}
	return b.String()
}

// afterOverBefore is meshnode's median rate over the before binary's, on
// each wire.
func (r *Report) afterOverBefore() string {
	after, before := r.find(kindMeshnode), r.find(kindMeshnodeBefore)
	parts := make([]string, 0, len(wires))
	for _, w := range wires {
		x := math.NaN()
		if after != nil {
			x, _ = after.medians(w)
		}
		parts = append(parts, fmt.Sprintf("%s on the %s", ratio(x, before, w), w))
	}
	return strings.Join(parts, ", ")
}

// Markdown is the whole report: what ran where, both tables, every run's
// figures, how each contender was set up, and what failed.
func (r *Report) Markdown(command string) string {
	var b strings.Builder
	b.WriteString("# Data plane on real kernels: meshnode against the raw path, stock wireguard-go and Nebula\n\n")
	fmt.Fprintf(&b, "Command: `%s` · %s · %s · Linux %s · %d CPUs (%s), load average %s at the start\n\n",
		command, r.Date.Format("2006-01-02 15:04 MST"), r.Version, r.Kernel, r.CPUs, r.CPU, r.Load)
	fmt.Fprintf(&b, "Two hosts behind two port-restricted NATs (Linux masquerade) in network namespaces, on the lab's\n"+
		"198.18.0.0/15 internet (each contender on its own pair of hosts behind the same two NATs, so no tunnel\n"+
		"runs inside another); one iperf3 TCP stream from host A to host B, %d s a run; median of %d runs,\n"+
		"interleaved (each round runs every contender on both wires). CPU: the contender's processes at both\n"+
		"ends, user and system time over the run, 100 %% = one core.\n\n", r.Seconds, r.Runs)
	b.WriteString(r.ThroughputTable())
	b.WriteString("\n")
	if lines := r.pairedLines(); lines != "" {
		b.WriteString("Round by round: each round's rate over the other's in the same round, the median of those\n" +
			"ratios and their range (the machine drifts between rounds; within one it is nearly the same):\n\n")
		b.WriteString(lines)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Idle round-trip time, median of %d rounds: in each round, just before a contender's iperf3 run on a\n"+
		"wire, %d pings %s s apart over its path, and the median of their replies. Overhead: the contender's RTT minus\n"+
		"the raw path's; × wireguard-go's overhead: that over stock wireguard-go's (the goal is at most 1.00×).\n"+
		"The raw path's pings go to router B's public address, which forwards ICMP echo requests to host B as it\n"+
		"forwards iperf3's port: they reach host B through both NATs, as the tunnels' pings do.\n\n", r.Runs, rttEchoes, rttGap)
	b.WriteString(r.LatencyTable())
	b.WriteString("\n")
	if len(r.Pings) > 0 {
		fmt.Fprintf(&b, "Time to first ping, median of %d: the first node is up and knows its public address; the\n"+
			"clock starts when the second node starts; the first node pings the second's overlay address every\n"+
			"50 ms from the moment it has one, so traffic is waiting before any path exists. Nebula (cone-cone\n"+
			"only: it has no relay here) the same way: a lighthouse on a public site; the first node is up and\n"+
			"has reached it (a ping to the lighthouse's Nebula address answered); each run starts a second node\n"+
			"on a new site, with its own certificate (signed before the clock starts) and address, which the\n"+
			"first node pings from the moment the second starts.\n\n", r.PairRuns)
		b.WriteString(r.PingTable())
		b.WriteString("\n")
	}
	b.WriteString("Every run:\n\n")
	b.WriteString(r.runsList())
	b.WriteString("\nHow each contender runs:\n\n")
	b.WriteString("- **raw path**: iperf3 and ping to router B's public address, which forwards the port and ICMP echo\n" +
		"  requests to host B (a home router's port forward): both NATs on the path, as for every tunnel.\n")
	if r.WireguardGoVersion != "" {
		fmt.Fprintf(&b, "- **stock wireguard-go**: %s@%s from the module proxy (go.mod's requirement, built outside the\n"+
			"  module, so not the replace), configured through its UAPI socket. It can't punch: each side's endpoint\n"+
			"  is the other NAT's public address and the port masquerade keeps, and both send at once (a persistent\n"+
			"  keepalive), so the second handshake finds the first side's mapping open.\n", wgModule, r.WireguardGoVersion)
	}
	b.WriteString("- **meshnode**: a coordinator and two `meshnode up` nodes; measured once both report the direct path.\n")
	if r.BeforeVersion != "" {
		fmt.Fprintf(&b, "- **meshnode before**: %s (PERF_BEFORE), set up the same way beside it, so a change's before\n"+
			"  and after share the run; after ÷ before: %s.\n", r.BeforeVersion, r.afterOverBefore())
	}
	if r.Nebula != "" {
		fmt.Fprintf(&b, "- **Nebula** (`%s`): a CA, a lighthouse on a public host (with a TUN, so a node can ping it),\n"+
			"  punching on, an allow-all firewall.\n", r.Nebula)
	} else {
		b.WriteString("- **Nebula**: not measured, no binary (set NEBULA_BIN).\n")
	}
	fmt.Fprintf(&b, "- **offload wire**: veth's defaults; **packet wire**: `ethtool -K` %s off on every veth of the lab,\n"+
		"  so every hop carries MTU-sized datagrams.\n", strings.Join(offloadFeatures, ", "))
	if f := r.Failures(); len(f) > 0 {
		b.WriteString("\nFailures:\n\n")
		for _, e := range f {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	return b.String()
}
