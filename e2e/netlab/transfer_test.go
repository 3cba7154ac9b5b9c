package netlab

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTransfer checks the transfer itself between two public hosts: the
// bytes arrive and are checked, and a path that stops carrying data fails
// the transfer after StallTimeout instead of hanging.
func TestTransfer(t *testing.T) {
	l := newTestLab(t)
	ctx := testCtx(t)
	s, err := l.AddSite(ctx, SiteConfig{Kind: Public, Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	from, to := s.Hosts[0], s.Hosts[1]

	t.Run("delivers", func(t *testing.T) {
		res, err := Transfer{From: from.NS, To: to.NS, Addr: to.Addr, Size: 3<<20 + 17}.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Bytes != 3<<20+17 {
			t.Errorf("received %d bytes, want %d", res.Bytes, 3<<20+17)
		}
	})

	t.Run("stall fails fast", func(t *testing.T) {
		const stall = time.Second
		var got atomic.Int64
		done := make(chan error, 1)
		go func() {
			_, err := Transfer{From: from.NS, To: to.NS, Addr: to.Addr, Size: 64 << 20, Rate: 1 << 20, StallTimeout: stall, Received: &got}.Run(ctx)
			done <- err
		}()
		if err := Poll(ctx, 10*time.Second, 10*time.Millisecond, func(context.Context) error {
			if got.Load() == 0 {
				return errors.New("no bytes received yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// Cut the receiver off: its end of the path goes dark.
		if err := to.NS.IP(ctx, "link set eth0 down"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "no data for") {
				t.Errorf("transfer over a dead path: %v; want a stall error", err)
			}
		case <-time.After(30 * stall):
			t.Fatalf("transfer still running %v after its path died (stall timeout %v)", 30*stall, stall)
		}
	})
}
