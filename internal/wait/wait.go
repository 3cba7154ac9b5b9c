// Package wait is the tests' convergence wait: poll a condition until it
// holds, with a deadline generous enough for a loaded CI machine, instead of
// a sleep standing in for synchronisation.
package wait

import (
	"errors"
	"testing"
	"time"
)

// Interval is the time between polls: fine next to the convergence times
// the tests measure (tens of milliseconds and up), cheap on the CPU.
const Interval = 20 * time.Millisecond

// For polls cond until it holds and returns how long that took; after
// timeout it fails t, naming what it waited for.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return ForNil(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is what a false condition reports.
var errNotYet = errors.New("still false")

// ForNil polls cond until it returns nil; after timeout it fails t with
// what it waited for and cond's last error.
func ForNil(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}
