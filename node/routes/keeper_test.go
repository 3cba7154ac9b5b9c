package routes

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wait"
)

// The keeper applies at start and on each wake, keeps a failure for
// status and tries again by itself, and clears when it ends.
func TestKeeper(t *testing.T) {
	var applied, cleared atomic.Int32
	var fail atomic.Bool
	fail.Store(true)
	k := NewKeeper("test routes", func() error {
		applied.Add(1)
		if fail.Load() {
			return errors.New("refused")
		}
		return nil
	}, func() error { cleared.Add(1); return nil }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()

	wait.For(t, 10*time.Second, "the first apply fails", func() bool { return k.Err() != nil })
	fail.Store(false)
	k.Wake()
	wait.For(t, 10*time.Second, "a woken apply succeeds", func() bool { return k.Err() == nil })
	before := applied.Load()
	k.Wake()
	wait.For(t, 10*time.Second, "every wake applies", func() bool { return applied.Load() > before })
	cancel()
	<-done
	if cleared.Load() != 1 {
		t.Fatalf("cleared %d times, want once", cleared.Load())
	}
}
