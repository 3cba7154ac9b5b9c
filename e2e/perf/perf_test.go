package perf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/labtest"
	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/internal/testenv"
)

// Environment variables (doc.go).
const (
	envPerf    = "MESHNODE_PERF"
	envOut     = "MESHNODE_PERF_OUT"
	envSeconds = "PERF_SECONDS"
	envRuns    = "PERF_RUNS"
	envNebula  = "NEBULA_BIN"
	envGate    = "MESHNODE_E2E"
	envBin     = "MESHNODE_BIN"
	envBefore  = "PERF_BEFORE"
	envProfile = "PERF_PROFILE"
)

// perfTimeout bounds the whole comparison: set-up, 9 rounds of 20 s runs
// of four contenders on two wires at most, each after its idle pings, and
// the first pings; within make's E2E_TIMEOUT of 30 minutes.
const perfTimeout = 28 * time.Minute

// TestMain removes what crashed runs left behind, and this run's
// namespaces on SIGINT or SIGTERM (netlab.Guard).
func TestMain(m *testing.M) {
	if (os.Getenv(envPerf) != "" || os.Getenv(envGate) != "") && netlab.Check() == nil {
		netlab.Guard("perf")
	}
	os.Exit(m.Run())
}

// TestPerf is `make perf`: the full comparison, printed and written to
// $MESHNODE_PERF_OUT.
func TestPerf(t *testing.T) {
	if os.Getenv(envPerf) == "" {
		t.Skipf("the real-kernel data-plane comparison takes minutes: run it with `make perf` as root (or set %s=1)", envPerf)
	}
	secs, err := envInt(envSeconds, os.Getenv(envSeconds), defaultSeconds, maxSeconds)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := envInt(envRuns, os.Getenv(envRuns), defaultRuns, maxRuns)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan{Seconds: secs, Runs: runs, WireguardGo: true, Nebula: nebulaBins(t), Pairs: Pairs(), PairRuns: runs}
	plan.ProfileDir = os.Getenv(envProfile)
	if plan.ProfileDir != "" {
		if err := os.MkdirAll(plan.ProfileDir, 0o755); err != nil {
			t.Fatalf("%s: %v", envProfile, err)
		}
	}
	var beforeVersion string
	if plan.Before = os.Getenv(envBefore); plan.Before != "" {
		beforeVersion = binVersion(t, plan.Before)
	}
	env := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), perfTimeout)
	defer cancel()
	rep, err := Compare(ctx, env, plan)
	if err != nil {
		t.Fatal(err)
	}
	rep.BeforeVersion = beforeVersion
	doc := rep.Markdown("make perf")
	t.Logf("report:\n%s", doc)
	if out := os.Getenv(envOut); out != "" {
		if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		} else {
			t.Logf("wrote %s", out)
		}
	}
	for _, f := range rep.Failures() {
		t.Error(f)
	}
}

// TestPerfSmoke keeps the harness from rotting inside make e2e: the raw
// path and meshnode, one idle RTT and one 1 s run on each wire, and one
// cone-cone first ping. It checks that every figure came out, not how big it is.
func TestPerfSmoke(t *testing.T) {
	if os.Getenv(envGate) == "" {
		t.Skipf("real-kernel lab: run it with `make e2e` as root (or set %s=1)", envGate)
	}
	if _, err := lookTools(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	plan := Plan{Seconds: 1, Runs: 1, Pairs: Pairs()[:1], PairRuns: 1}
	env := newEnv(t)
	rep, err := Compare(t.Context(), env, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep.Markdown("go test -run TestPerfSmoke ./e2e/perf"))
	for _, f := range rep.Failures() {
		t.Error(f)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want the raw path and meshnode", len(rep.Rows))
	}
	for _, row := range rep.Rows {
		for _, w := range wires {
			if len(row.Samples[w]) != 1 || row.Samples[w][0].Mbps <= 0 {
				t.Errorf("%s, %s: samples %+v, want one positive rate", row.Name, w, row.Samples[w])
			}
			if len(row.RTTs[w]) != 1 || row.RTTs[w][0] <= 0 {
				t.Errorf("%s, %s: idle RTTs %v, want one positive time", row.Name, w, row.RTTs[w])
			}
		}
	}
	if m := rep.find(kindMeshnode); m != nil && len(m.Samples[offloadWire]) == 1 && !m.Samples[offloadWire][0].HasCPU {
		t.Errorf("meshnode's run has no CPU figure")
	}
	if len(rep.Pings) != 1 || len(rep.Pings[0].Meshnode.Times) != 1 || rep.Pings[0].Meshnode.Times[0] <= 0 || rep.Pings[0].Nebula != nil {
		t.Errorf("time to first ping: %+v, want one positive time for meshnode and none for Nebula", rep.Pings)
	}
}

// nebulaBins returns Nebula and nebula-cert when NEBULA_BIN (default
// ../shared/peers/nebula beside the repository) exists, else nil: the
// comparison then runs without it and says so.
func nebulaBins(t *testing.T) *NebulaBins {
	t.Helper()
	p := os.Getenv(envNebula)
	if p == "" {
		p = filepath.Join("..", "..", "..", "shared", "peers", "nebula")
	}
	p, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Logf("Nebula not measured: %v (set %s)", err, envNebula)
		return nil
	}
	cert := filepath.Join(filepath.Dir(p), "nebula-cert")
	if _, err := os.Stat(cert); err != nil {
		t.Fatalf("Nebula at %s, but no nebula-cert beside it: %v", p, err)
	}
	return &NebulaBins{Nebula: p, Cert: cert}
}

// newEnv builds a lab with a coordinator and a join token, or skips (fails
// under CI) saying what is missing. It all goes away when the test ends.
func newEnv(t *testing.T) Env {
	t.Helper()
	if err := netlab.Check(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	bin := os.Getenv(envBin)
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "meshnode")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	version := binVersion(t, bin)
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	lab := labtest.NewLab(ctx, t, bin)
	coord, err := lab.StartCoordinator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token, err := coord.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return Env{Lab: lab, Coord: coord, Token: token, Version: version, Logf: t.Logf}
}

// binVersion is the first line of `bin version`, or the test stops
// saying the binary is unusable.
func binVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		testenv.Unavailable(t, "meshnode binary %s: %v: run `make build` (or build the revision PERF_BEFORE names)", bin, err)
	}
	return firstLine(string(out))
}
