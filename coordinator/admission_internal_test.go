package coordinator

import (
	"net"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/admit"
)

// TestPacedListener: an accept is held back only while the gate is over
// the threshold and promoted a connection of late, and then for a
// bounded time: the next connection is always accepted.
func TestPacedListener(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		above    int
		promote  bool
		wantBusy bool
	}{
		{"under the threshold", 8, true, false},
		{"over it, nothing getting through (a flood)", 1, false, false},
		{"over it, connections getting through", 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			gate := admit.New(admit.Limits{PerSource: 16, Total: 16, Timeout: time.Minute}, nil)
			pl := &pacedListener{Listener: ln, gate: gate, above: tc.above, recent: time.Hour, step: time.Millisecond, max: 20 * time.Millisecond}
			gl := gate.Listener(pl)
			// connect dials and returns the accepted end.
			connect := func() net.Conn {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				a, err := gl.Accept()
				if err != nil {
					t.Fatalf("accept with %d pending: %v", gate.Pending(), err)
				}
				t.Cleanup(func() { a.Close() })
				return a
			}
			var accepted []net.Conn
			for range 4 {
				accepted = append(accepted, connect())
			}
			if tc.promote {
				accepted[0].(*admit.Conn).Promote()
			}
			if busy := pl.busy(); busy != tc.wantBusy {
				t.Errorf("busy with %d pending: %v, want %v", gate.Pending(), busy, tc.wantBusy)
			}
			connect()
		})
	}
}
