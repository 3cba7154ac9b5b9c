package natlab

import (
	"fmt"
	"testing"
	"time"
)

// TestLatency delays packets by at least the sender's latency and keeps
// their order.
func TestLatency(t *testing.T) {
	const (
		latency = 30 * time.Millisecond
		count   = 200
	)
	l, _ := newLab(t)
	sender := l.NewHost("sender")
	sender.SetLatency(latency)
	a := listen(t, sender, 5000)
	b := listen(t, l.NewHost("receiver"), 6000)
	start := time.Now()
	for i := range count {
		send(t, a, b.LocalAddrPort(), fmt.Sprint(i))
		if i == 0 && b.Queued() != 0 && time.Since(start) < latency {
			t.Errorf("packet arrived after %v, before the latency %v", time.Since(start), latency)
		}
	}
	for i := range count {
		got, _ := recv(t, b)
		if i == 0 && time.Since(start) < latency {
			t.Errorf("first packet after %v, want at least %v", time.Since(start), latency)
		}
		if got != fmt.Sprint(i) {
			t.Fatalf("packet %d is %q: latency reordered packets", i, got)
		}
	}
}

// TestLoss drops a repeatable share of packets: the same seed loses the
// same packets, another seed others, and the counters add up.
func TestLoss(t *testing.T) {
	const (
		count = 1000
		loss  = 0.25
	)
	run := func(seed uint64) (pattern string, lost uint64) {
		l, _ := newLab(t)
		sender := l.NewHost("sender")
		sender.SetLoss(loss)
		if seed != 0 {
			sender.SetLossSeed(seed)
		}
		receiver := l.NewHost("receiver")
		a := listen(t, sender, 5000)
		b := listen(t, receiver, 6000)
		buf := make([]byte, count)
		for i := range count {
			send(t, a, b.LocalAddrPort(), "x")
			buf[i] = byte('0' + b.Queued())
			drain(t, b)
		}
		s := sender.Stats()
		if got := receiver.Stats().Received; s.Sent != count || got != count-s.Lost {
			t.Errorf("Sent %d, Lost %d, received %d: counters do not add up", s.Sent, s.Lost, got)
		}
		return string(buf), s.Lost
	}
	first, lost := run(0)
	if lost < count*loss/2 || lost > count*loss*3/2 {
		t.Errorf("lost %d of %d at p=%v", lost, count, loss)
	}
	if again, _ := run(0); again != first {
		t.Error("the same seed lost different packets")
	}
	if other, _ := run(42); other == first {
		t.Error("SetLossSeed(42) lost the same packets as the default seed")
	}
}
