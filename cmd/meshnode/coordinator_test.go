package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

// The coordinator command collects garbage at coordinatorGOGC, unless the
// operator set GOGC in the environment, which then stands. The command
// runs in this process with a context already done: it starts, applies
// its settings and stops.
func TestCoordinatorGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	for _, tc := range []struct {
		name, env string
		want      int
	}{
		{"default", "", coordinatorGOGC},
		{"GOGC in the environment", "100", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.env)
			debug.SetGCPercent(100)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs([]string{"coordinator", "--config", emptyConfig(t), "--data-dir", t.TempDir(),
				"--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--metrics-listen", "", "--ui-listen", ""})
			if err := root.ExecuteContext(ctx); err != nil {
				t.Fatalf("coordinator: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "control API on") {
				t.Fatalf("the coordinator did not start:\n%s", out.String())
			}
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d with GOGC=%q, want %d", got, tc.env, tc.want)
			}
		})
	}
}
