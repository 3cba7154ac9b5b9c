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
// under CI=true). CI runs as root, hence no sandbox.
func browser(tb testing.TB) context.Context {
	tb.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(tb, "no chromium on PATH (Debian's package chromium; scripts/deps.sh installs it)")
		return nil
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1400, 1100))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { bcancel(); acancel() })
	// The browser lives as long as the context of the first run: bctx.
	if err := chromedp.Do(bctx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return bctx
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
