package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFloodIsBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// One record an hour: within the test only the burst passes.
	l := New(log, time.Hour, 3)
	const flood = 10_000
	for range flood {
		l.Info("stream refused", "remote", "198.51.100.7:1234")
	}
	if got := strings.Count(buf.String(), "stream refused"); got != 3 {
		t.Fatalf("%d records written for a flood of %d, want the burst of 3", got, flood)
	}
	// The next record that passes says how many were dropped.
	l.lim.SetBurstAt(time.Now(), 4)
	l.lim.SetLimit(1e9)
	l.Info("stream refused")
	if !strings.Contains(buf.String(), "suppressed=9997") {
		t.Fatalf("no count of the dropped records in:\n%s", buf.String())
	}
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := New(log, time.Hour, 1)
	for range 100 {
		l.Debug("not written")
	}
	l.Info("written")
	if out := buf.String(); strings.Contains(out, "not written") || !strings.Contains(out, "written") || strings.Contains(out, "suppressed") {
		t.Fatalf("output %q: debug records must neither be written nor spend the budget", out)
	}
}
