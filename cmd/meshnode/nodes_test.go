package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// TestNodesListShowsRelays: the RELAY column shows the relay a node is
// offered as, its suspension, or nothing.
func TestNodesListShowsRelays(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 5, 4, 13, 7, 9, 0, time.Local)
	for _, tc := range []struct {
		name string
		node wire.Node
		want string
	}{
		{"offered", wire.Node{Name: "gw", Tags: []string{wire.TagRelay}, Relay: "203.0.113.8:3479"}, "203.0.113.8:3479"},
		{"suspended", wire.Node{Name: "gw", Tags: []string{wire.TagRelay}, RelaySuspendedUntil: until}, "suspended until 13:07:09"},
		{"no relay", wire.Node{Name: "laptop"}, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printNodes(&out, []wire.Node{tc.node}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], "RELAY") {
				t.Fatalf("output %q: want a header with RELAY and one row", out.String())
			}
			col := strings.Index(lines[0], "RELAY")
			if got := lines[1][col:]; !strings.HasPrefix(got, tc.want) {
				t.Fatalf("RELAY column %q, want %q", got, tc.want)
			}
		})
	}
}
