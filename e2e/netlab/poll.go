package netlab

import (
	"context"
	"fmt"
	"time"
)

// PollInterval is how often waits re-check a condition: quick next to the
// seconds that NAT traversal takes, slow enough that polling a node's
// control socket costs nothing.
const PollInterval = 100 * time.Millisecond

// Poll calls cond every interval until it returns nil. It gives up when
// timeout passes or ctx ends, returning cond's last error that the deadline
// didn't cause: "no path yet" says more than "status: context canceled".
func Poll(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not true after %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}
