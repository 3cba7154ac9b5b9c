package ui_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshnode/meshnode/internal/testenv"
)

// stepTimeout bounds one browser action.
const stepTimeout = 30 * time.Second

// browser starts headless Chromium (Debian's chromium) for the test, and
// stops it at the test's end; without chromium the test skips (fails
// under CI=true). CI runs as root, hence no sandbox. Chromium starts in
// the background, taking seconds: the test sets up meanwhile, and the
// function browser returns waits until it runs.
func browser(tb testing.TB) func() context.Context {
	tb.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(tb, "no chromium on PATH (Debian's package chromium; scripts/deps.sh installs it)")
		return nil
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1400, 1100))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	started := make(chan error, 1)
	// The browser lives as long as the context of the first run: bctx.
	go func() { started <- chromedp.Do(bctx) }()
	tb.Cleanup(func() { bcancel(); <-started; acancel() })
	return func() context.Context {
		tb.Helper()
		err := <-started
		started <- err // for the cleanup, or another call
		if err != nil {
			tb.Fatalf("start chromium: %v", err)
		}
		return bctx
	}
}

// run runs act in the browser of bctx within stepTimeout.
func run[T any](bctx context.Context, what string, act chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(bctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, act)
	if err != nil {
		return v, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}
