package control

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// pick draws among the coordinators that have not failed since the last
// welcome, never the one that just failed while another is left, and
// spreads its draws over all the candidates.
func TestPickSpreads(t *testing.T) {
	list := func(urls ...string) []crypto.Coordinator {
		var out []crypto.Coordinator
		for _, u := range urls {
			out = append(out, crypto.Coordinator{URL: u})
		}
		return out
	}
	const draws = 300
	tests := []struct {
		name    string
		targets []crypto.Coordinator
		failed  []string // failed before, in order, since the last welcome
		now     string   // the one that just failed
		want    []string // every one of these is drawn, nothing else
	}{
		{"one left of three", list("a", "b", "c"), []string{"b"}, "a", []string{"c"}},
		{"the survivors of three", list("a", "b", "c"), nil, "a", []string{"b", "c"}},
		{"all failed: any but the last", list("a", "b", "c"), []string{"b", "c"}, "a", []string{"b", "c"}},
		{"the only one", list("a"), nil, "a", []string{"a"}},
		{"no longer listed", list("b", "c"), nil, "a", []string{"b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]int{}
			for range draws {
				s := &Stream{targets: tt.targets, failed: map[string]bool{}}
				for _, f := range tt.failed {
					s.failed[f] = true
				}
				seen[s.pick(tt.now)]++
			}
			var got []string
			for u := range seen {
				got = append(got, u)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("drew %v; want every one of %v and nothing else", seen, tt.want)
			}
			for _, u := range tt.want {
				if seen[u] < draws/len(tt.want)/3 {
					t.Fatalf("drew %v: not spread over %v", seen, tt.want)
				}
			}
		})
	}
}

// A node whose coordinator drops its stream, and then refuses
// connections, is welcomed by another listed coordinator; one whose pin
// does not match is passed over the same way. The stream reports the
// coordinator it is connected to.
func TestStreamFailsOver(t *testing.T) {
	welcome := func(cc *coordConn, _ int) {
		if cc.auth() {
			cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Self: &wire.Node{Name: "n"}})
			cc.hold()
		}
	}
	dies := newCoord(t, func(cc *coordConn, n int) {
		if n == 1 && cc.auth() {
			cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Self: &wire.Node{Name: "n"}})
		}
	})
	b, c := newCoord(t, welcome), newCoord(t, welcome)
	// Coordinators of one mesh share their key (coordinator/mesh.go).
	b.priv, c.priv = dies.priv, dies.priv
	wrongPin := crypto.CertFingerprint([]byte("another certificate"))

	for _, tt := range []struct {
		name    string
		targets []crypto.Coordinator
		want    []string // acceptable coordinators after the failover
	}{
		{"coordinator dies", []crypto.Coordinator{{URL: dies.srv.URL, Pin: dies.pin}, {URL: b.srv.URL, Pin: b.pin}, {URL: c.srv.URL, Pin: c.pin}}, []string{b.srv.URL, c.srv.URL}},
		{"pin mismatch", []crypto.Coordinator{{URL: b.srv.URL, Pin: wrongPin}, {URL: c.srv.URL, Pin: c.pin}}, []string{c.srv.URL}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dies.conns.Store(0)
			s := dies.stream(t)
			s.Coordinators = tt.targets
			s.Backoff = Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}
			h := newRecorder()
			// Read while the welcome's session is current: the first
			// may end at once.
			current := make(chan string, 64)
			h.onWelcome = func(wire.StreamMsg) {
				url, known := s.Current()
				if known != len(tt.targets) {
					t.Errorf("the stream knows %d coordinators; want %d", known, len(tt.targets))
				}
				current <- url
			}
			run(t, s, h)
			start := time.Now()
			deadline := time.After(waitFor)
			for {
				var e event
				select {
				case e = <-h.events:
				case <-deadline:
					t.Fatalf("not welcomed by one of %v in %v", tt.want, waitFor)
				}
				switch e.kind {
				case "welcome":
					url := <-current
					if slices.Contains(tt.want, url) {
						t.Logf("welcomed by %s %v after the start", url, time.Since(start).Round(time.Millisecond))
						return
					}
					if url != tt.targets[0].URL {
						t.Fatalf("welcomed by %s; want one of %v", url, tt.want)
					}
				case "disconnect":
					if tt.name == "pin mismatch" && !strings.Contains(e.err.Error(), "does not match the token's pin") {
						t.Fatalf("disconnect %v; want a pin mismatch", e.err)
					}
				}
			}
		})
	}
}

// A coordinator that refuses the node's key while another is known is
// passed over; the node stops only when every known coordinator refused
// it, or one says it was removed (they share the database).
func TestUnauthorizedByOneFailsOver(t *testing.T) {
	refuse := func(code string) func(cc *coordConn, _ int) {
		return func(cc *coordConn, _ int) {
			cc.send(wire.StreamMsg{Type: wire.MsgChallenge, Challenge: make([]byte, 32)})
			cc.recv()
			cc.send(wire.StreamMsg{Type: wire.MsgError, Code: code, Error: "refused"})
		}
	}
	welcome := func(cc *coordConn, _ int) {
		if cc.auth() {
			cc.send(wire.StreamMsg{Type: wire.MsgWelcome, Self: &wire.Node{Name: "n"}})
			cc.hold()
		}
	}
	unauth, unauth2, removed, ok := newCoord(t, refuse(wire.ErrCodeUnauthorized)), newCoord(t, refuse(wire.ErrCodeUnauthorized)), newCoord(t, refuse(wire.ErrCodeNodeRemoved)), newCoord(t, welcome)
	ok.priv = unauth.priv
	at := func(co *coord) crypto.Coordinator { return crypto.Coordinator{URL: co.srv.URL, Pin: co.pin} }
	for _, tt := range []struct {
		name    string
		targets []crypto.Coordinator
		want    string // the error code Run returns; "": welcomed
	}{
		{"another accepts", []crypto.Coordinator{at(unauth), at(ok)}, ""},
		{"every one refuses", []crypto.Coordinator{at(unauth), at(unauth2)}, wire.ErrCodeUnauthorized},
		{"removed", []crypto.Coordinator{at(removed), at(ok)}, wire.ErrCodeNodeRemoved},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := unauth.stream(t)
			s.Coordinators = tt.targets
			h := newRecorder()
			done := run(t, s, h)
			if tt.want == "" {
				for e := h.next(t, "disconnect"); e.kind != "welcome"; {
					select {
					case e = <-h.events:
					case err := <-done:
						t.Fatalf("Run returned %v; want a welcome from the other coordinator", err)
					case <-time.After(waitFor):
						t.Fatalf("no welcome in %v", waitFor)
					}
				}
				return
			}
			select {
			case err := <-done:
				var re *RejectedError
				if !errors.As(err, &re) || re.Code != tt.want {
					t.Fatalf("Run = %v; want %s", err, tt.want)
				}
			case <-time.After(waitFor):
				t.Fatalf("Run did not return in %v", waitFor)
			}
		})
	}
}
