package netlab

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	t.Run("returns once true", func(t *testing.T) {
		calls := 0
		err := Poll(t.Context(), 10*time.Second, time.Millisecond, func(context.Context) error {
			calls++
			if calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("Poll = %v after %d calls; want nil after 3", err, calls)
		}
	})
	t.Run("keeps the last error the deadline didn't cause", func(t *testing.T) {
		err := Poll(t.Context(), 50*time.Millisecond, time.Millisecond, func(ctx context.Context) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("no path yet")
		})
		if err == nil || !strings.Contains(err.Error(), "no path yet") {
			t.Errorf("Poll = %v; want it to report %q", err, "no path yet")
		}
	})
}
