package routes

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// retryEvery is how soon a failed apply is tried again: the OS refusing a
// route or a rule is seldom fixed by the next peer change alone.
const retryEvery = 5 * time.Second

// Keeper keeps OS state (routes, the gateway's table) in line with what
// the node wants, off the paths that change it: Wake never blocks, and Run
// applies the latest on every wake, retries a failure, and clears
// everything when its context ends.
type Keeper struct {
	name  string
	apply func() error
	clear func() error
	log   *slog.Logger
	wake  chan struct{}

	mu  sync.Mutex
	err error // the last apply's
}

// NewKeeper returns a Keeper that calls apply to bring the OS in line and
// clear to undo it all.
func NewKeeper(name string, apply, clear func() error, log *slog.Logger) *Keeper {
	return &Keeper{name: name, apply: apply, clear: clear, log: log, wake: make(chan struct{}, 1)}
}

// Wake asks for an apply soon.
func (k *Keeper) Wake() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Err is why the last apply failed; nil when it worked.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Run applies at once and on every wake until ctx ends, then clears.
func (k *Keeper) Run(ctx context.Context) {
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := k.clear(); err != nil {
				k.log.Warn("removing "+k.name, "err", err)
			}
			return
		case <-k.wake:
		case <-retry.C:
		}
		err := k.apply()
		k.mu.Lock()
		repeated := err != nil && k.err != nil && err.Error() == k.err.Error()
		k.err = err
		k.mu.Unlock()
		if err != nil {
			if !repeated {
				k.log.Error("applying "+k.name+"; retrying every "+retryEvery.String(), "err", err)
			}
			retry.Reset(retryEvery)
		}
	}
}
