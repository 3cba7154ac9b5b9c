package stunserver

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// ResultDelayed counts a signed request whose answer was held for the delay
// it asked (wire.STUNAttrResponseDelay).
const ResultDelayed = "delayed"

// delayed holds late answers: each node at most wire.MaxDelayedPerNode at
// once, all nodes at most wire.MaxDelayedTotal. A request over either
// bound is answered at once, which its sender reads as "not supported".
type delayed struct {
	mu     sync.Mutex
	byUser map[string]int
	total  int
	timers map[*time.Timer]struct{}
	closed bool
}

func newDelayed() *delayed {
	return &delayed{byUser: make(map[string]int), timers: make(map[*time.Timer]struct{})}
}

// requestedDelay reads the delay a request asks for; zero when none or out
// of bounds.
func requestedDelay(req *stun.Message) time.Duration {
	v, err := req.Get(stun.AttrType(wire.STUNAttrResponseDelay))
	if err != nil || len(v) != 4 {
		return 0
	}
	d := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	if d <= 0 || d > wire.MaxResponseDelay {
		return 0
	}
	return d
}

// hold sends resp to to through c after d, within the bounds; it reports
// false when over them.
func (q *delayed) hold(user string, d time.Duration, c net.PacketConn, resp []byte, to net.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.byUser[user] >= wire.MaxDelayedPerNode || q.total >= wire.MaxDelayedTotal {
		return false
	}
	q.byUser[user]++
	q.total++
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		if q.release(user, t) {
			c.WriteTo(resp, to) //nolint:errcheck // a lost late answer reads as an expired mapping, which is the safe side
		}
	})
	q.timers[t] = struct{}{}
	return true
}

// release forgets a fired timer; it reports whether the answer is still due.
func (q *delayed) release(user string, t *time.Timer) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.timers[t]; !ok {
		return false
	}
	delete(q.timers, t)
	q.total--
	if q.byUser[user]--; q.byUser[user] <= 0 {
		delete(q.byUser, user)
	}
	return !q.closed
}

// close drops every held answer: the sockets are going away.
func (q *delayed) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for t := range q.timers {
		t.Stop()
	}
	clear(q.timers)
	clear(q.byUser)
	q.total = 0
}
