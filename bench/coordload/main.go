// Command coordload loads one coordinator with simulated nodes on
// loopback (internal/loadgen) at each of several mesh sizes, and prints
// a line of figures per size. `make bench-coordinator` runs it.
//
//	coordload -bin bin/meshnode -sizes 1000,2000,5000,10000 -group 100
//
// With -bin the coordinator is that binary, in a process of its own, so
// its RSS and CPU time are its own; any revision's build works
// (scripts/build-rev.sh), for before and after. Without it the
// coordinator runs in this process, where -cpuprofile and -heapprofile
// profile it (beside the simulated nodes).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/internal/loadgen"
)

func main() {
	var (
		bin       = flag.String("bin", "", "meshnode binary to run as the coordinator; empty: a coordinator in this process")
		label     = flag.String("label", "", "label of -bin's lines")
		binArgs   = flag.String("bin-args", "", "more flags for -bin's coordinator, not -before's (e.g. \"--memory-limit 450MiB\")")
		before    = flag.String("before", "", "another meshnode binary (an older revision), run at each size just before -bin, labelled before")
		sizes     = flag.String("sizes", "1000,2000,5000,10000", "mesh sizes, comma-separated")
		group     = flag.Int("group", 0, "nodes per policy group (each sees only its group); 0: no policy, everyone sees everyone")
		first     = flag.Bool("policy-first", false, "set the policy before the nodes register (registrations under a policy); else once all are registered")
		herd      = flag.Bool("herd", false, "at the end, drop every stream and open them all again (resumed maps where the coordinator can)")
		rounds    = flag.Int("rounds", 5, "changes and churns measured per size")
		perSource = flag.Int("per-source", 50, "nodes per loopback source address (127.10.x.y); 0: one source")
		workers   = flag.Int("workers", 16, "concurrent registrations")
		timeout   = flag.Duration("timeout", 5*time.Minute, "bound on each phase")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the run here (in-process coordinator only)")
		heapprof  = flag.String("heapprofile", "", "write a heap profile after each size's convergence here (in-process coordinator only)")
	)
	flag.Parse()
	if err := run(*before, *bin, *label, strings.Fields(*binArgs), *sizes, *group, *first, *herd, *rounds, *perSource, *workers, *timeout, *cpuprof, *heapprof); err != nil {
		fmt.Fprintln(os.Stderr, "coordload:", err)
		os.Exit(1)
	}
}

func run(before, bin, label string, binArgs []string, sizeList string, group int, policyFirst, herd bool, rounds, perSource, workers int, timeout time.Duration, cpuprof, heapprof string) error {
	var sizes []int
	for f := range strings.SplitSeq(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return fmt.Errorf("-sizes: %q is not a mesh size of at least 2", f)
		}
		sizes = append(sizes, n)
	}
	if (cpuprof != "" || heapprof != "") && bin != "" {
		return fmt.Errorf("-cpuprofile and -heapprofile profile an in-process coordinator; drop -bin")
	}
	if before != "" && bin == "" {
		return fmt.Errorf("-before needs -bin: both run as processes, to compare like with like")
	}
	if len(binArgs) > 0 && bin == "" {
		return fmt.Errorf("-bin-args needs -bin")
	}
	sides := []side{{label, bin, binArgs}}
	if before != "" {
		sides = []side{{"before", before, nil}, {label, bin, binArgs}}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	mode := "coordinator binary in its own process"
	if bin == "" {
		mode = "coordinator in the load generator's process (RSS and CPU include the simulated nodes)"
	}
	when := "after"
	if policyFirst {
		when = "before"
	}
	fmt.Printf("# %s; group %d (0: open mesh), policy set %s registering; %d rounds; %d CPUs; load %s\n", mode, group, when, rounds, runtime.NumCPU(), loadavg())
	fmt.Println("| label | nodes | register/s | converged | time to converge | welcomes | drops | MB sent | change p50 | change p99 | offline p99 | online p99 | RSS MB | peak RSS MB | CPU s (converge) | CPU s (total) | churn KB welcomes | herd s | herd KB sent | herd KB welcomes | herd resumed |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var failed []string
	for _, n := range sizes {
		need := n
		if bin == "" {
			need = 2 * n
		}
		if err := loadgen.RaiseFileLimit(need); err != nil {
			return err
		}
		for _, sd := range sides {
			rep, err := one(ctx, sd, n, loadgen.Config{
				Nodes: n, Group: group, PolicyFirst: policyFirst, Herd: herd, Rounds: rounds, PerSource: perSource, Workers: workers, Timeout: timeout,
				Progress: func(format string, args ...any) {
					fmt.Fprintf(os.Stderr, "%s %s %d: %s\n", time.Now().UTC().Format("15:04:05"), sd.label, n, fmt.Sprintf(format, args...))
				},
			}, heapprof)
			fmt.Println(row(sd.label, rep))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A size one side can't handle is a finding, not the end of
			// the run: the other side and the other sizes still go.
			if err != nil {
				fmt.Fprintf(os.Stderr, "coordload: %s, %d nodes: %v\n", sd.label, n, err)
				failed = append(failed, fmt.Sprintf("%s at %d nodes", sd.label, n))
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// side is one coordinator that a run loads: a binary with its flags, or
// (bin empty) one in this process.
type side struct {
	label, bin string
	args       []string
}

// one runs one size against a fresh coordinator.
func one(ctx context.Context, sd side, n int, cfg loadgen.Config, heapprof string) (loadgen.Report, error) {
	dir, err := os.MkdirTemp("", "coordload-")
	if err != nil {
		return loadgen.Report{}, err
	}
	defer os.RemoveAll(dir)
	var t loadgen.Target
	if sd.bin != "" {
		t, err = loadgen.StartProcess(sd.bin, dir, sd.args...)
	} else {
		t, err = loadgen.StartInProcess(dir, nil)
	}
	if err != nil {
		return loadgen.Report{}, err
	}
	defer t.Close()
	rep, err := loadgen.Run(ctx, t, cfg)
	if heapprof != "" {
		if herr := writeHeap(fmt.Sprintf("%s.%d", heapprof, n)); herr != nil && err == nil {
			err = herr
		}
	}
	return rep, err
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func row(label string, r loadgen.Report) string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	return fmt.Sprintf("| %s | %d | %.0f | %d | %.1f s | %d | %d | %d | %s | %s | %s | %s | %d | %d | %.1f | %.1f | %d | %.1f | %d | %d | %d |",
		label, r.Nodes, r.RegistrationsPerSecond(), r.Converged, r.Converge.Seconds(), r.Welcomes, r.Drops, r.ConvergeBytes>>20,
		ms(loadgen.Quantile(r.Change, 0.5)), ms(loadgen.Quantile(r.Change, 0.99)),
		ms(loadgen.Quantile(r.Offline, 0.99)), ms(loadgen.Quantile(r.Online, 0.99)),
		r.Usage.RSS>>20, max(r.Usage.PeakRSS, r.End.PeakRSS)>>20, r.ConvergeCPU, max(r.Usage.CPU, r.End.CPU),
		r.ChurnWelcomeBytes>>10, r.HerdTime.Seconds(), r.HerdBytes>>10, r.HerdWelcomeBytes>>10, r.HerdResumed)
}

// loadavg is the machine's load (proc(5)), to read the figures by.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
