package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
)

// Only nodes ping. A node that keeps pinging stays online through many
// silence windows with nothing else to say; one that stops (crashed, or
// its NAT dropped the TCP flow) is dropped, and its peers see it offline.
// Parallel: the nodes that keep alive ping every quarter of the silence
// window, so only a stall of over a second on a busy CPU would drop one.
func TestSilentNodeIsDropped(t *testing.T) {
	t.Parallel()
	const silence = 1500 * time.Millisecond
	h := start(t, testConfig(t), func(s *coordinator.Server) { coordinator.SetStreamSilence(s, silence) })
	token := h.token(coordinator.TokenOptions{Reusable: true})
	watcher := newNode(t, h).join(token, "watcher")
	pinger := newNode(t, h).join(token, "pinger")
	mute := newNode(t, h).join(token, "mute")
	sw, sp, sm := watcher.connect(), pinger.connect(), mute.connect()
	delivered(t, "both online", func() bool {
		p, _ := sw.peer(pinger.key())
		m, _ := sw.peer(mute.key())
		return p.Online && m.Online
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pinging := make(chan error, 1)
	go func() {
		for {
			if err := sp.conn.Ping(ctx); err != nil {
				pinging <- err
				return
			}
			tick := time.NewTimer(silence / 4)
			select {
			case <-ctx.Done():
				tick.Stop()
				pinging <- nil
				return
			case <-tick.C:
			}
		}
	}()
	// The watcher keeps itself alive too.
	go func() {
		for ctx.Err() == nil && sw.conn.Ping(ctx) == nil {
			tick := time.NewTimer(silence / 4)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			tick.Stop()
		}
	}()
	// The mute node is dropped each time it comes back and says nothing:
	// three windows of silence, through which the pinger stays.
	for i := range 3 {
		if i > 0 {
			sm = mute.connect()
		}
		delivered(t, "the mute node offline", func() bool {
			m, _ := sw.peer(mute.key())
			return !m.Online && sm.closed()
		})
		if p, _ := sw.peer(pinger.key()); !p.Online {
			t.Fatalf("the pinging node was dropped within %d windows", i+1)
		}
	}
	cancel()
	if err := <-pinging; err != nil && ctx.Err() == nil {
		t.Fatalf("pinging: %v", err)
	}
}
