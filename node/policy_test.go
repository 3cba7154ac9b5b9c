package node

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/filter"
)

// The coordinator's filters, message after message: a welcome's nil means
// no policy, a delta's nil no change; an invalid filter is logged once and
// the one in force stays; an older one is ignored.
func TestFilterLinkAppliesTheCoordinatorsFilters(t *testing.T) {
	var logs bytes.Buffer
	e := &Engine{filter: filter.New(filter.Options{}), log: slog.New(slog.NewTextHandler(&logs, nil))}
	l := &filterLink{e: e}
	policy := func(v uint64) *wire.Filter {
		all := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		return &wire.Filter{Version: v, Rules: []wire.FilterRule{{Rule: "all web", Src: all, Dst: all, Proto: wire.ProtoTCP, Ports: []wire.PortRange{{First: 443, Last: 443}}}}}
	}
	bad := policy(3)
	bad.Rules[0].Ports[0] = wire.PortRange{First: 9, Last: 1}
	for _, step := range []struct {
		what    string
		f       *wire.Filter
		welcome bool
		active  bool
		version uint64
	}{
		{"a welcome without a policy", nil, true, false, 0},
		{"a welcome with one", policy(2), true, true, 2},
		{"a delta without a change", nil, false, true, 2},
		{"an invalid filter", bad, false, true, 2},
		{"the same invalid filter again", bad, true, true, 2},
		{"an older filter", policy(1), false, true, 2},
		{"the policy removed", &wire.Filter{Version: 4, AllowAll: true}, false, false, 4},
		{"a welcome without a policy again", nil, true, false, 4},
		{"a new policy", policy(5), false, true, 5},
	} {
		l.apply(step.f, step.welcome)
		if st := e.filter.Status(); st.Active != step.active || st.Version != step.version {
			t.Errorf("after %s: active %v version %d, want %v %d", step.what, st.Active, st.Version, step.active, step.version)
		}
	}
	for msg, want := range map[string]int{"access policy refused": 1, "access policy removed": 1, "access policy in force": 2} {
		if n := strings.Count(logs.String(), msg); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", msg, n, want, logs.String())
		}
	}
}
