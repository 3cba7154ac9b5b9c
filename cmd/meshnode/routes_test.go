package main

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestParseRoutes(t *testing.T) {
	t.Parallel()
	got, err := parseRoutes([]string{"192.168.10.0/24", "exit"})
	want := []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24"), wire.ExitRouteV4, wire.ExitRouteV6}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseRoutes = %v, %v; want %v", got, err, want)
	}
	_, err = parseRoutes([]string{"192.168.10.1/24", "office"})
	for _, w := range []string{`"192.168.10.1/24" has host bits set: use 192.168.10.0/24`, `"office" is not a route`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("parseRoutes error %v, want it to say %q", err, w)
		}
	}
}

func TestRoutesListShowsState(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 5, 4, 13, 7, 9, 0, time.Local)
	var out bytes.Buffer
	err := printRoutes(&out, []coordinator.RouteInfo{
		{Node: "gw", Prefix: wire.ExitRouteV4, Advertised: true, Approved: true, ApprovedAt: since, Online: true},
		{Node: "gw", Prefix: netip.MustParsePrefix("192.168.10.0/24"), Advertised: true, Approved: true, ApprovedAt: since, Primary: true, Online: true},
		{Node: "gw2", Prefix: netip.MustParsePrefix("192.168.10.0/24"), Advertised: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	at := strings.Fields(since.Format(timeLayout))
	want := [][]string{
		{"NODE", "PREFIX", "ADVERTISED", "APPROVED", "PRIMARY", "ONLINE"},
		append(append([]string{"gw", "0.0.0.0/0", "yes"}, at...), "exit", "yes"),
		append(append([]string{"gw", "192.168.10.0/24", "yes"}, at...), "yes", "yes"),
		{"gw2", "192.168.10.0/24", "yes", "no", "no", "no"},
	}
	if len(lines) != len(want) {
		t.Fatalf("output %q: want %d lines", out.String(), len(want))
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !slices.Equal(got, w) {
			t.Errorf("line %d: %q, want %q", i, got, w)
		}
	}
}

func TestRoutesCommandsRefuseBadInput(t *testing.T) {
	t.Parallel()
	code, out := run(t, "routes", "approve", "gw", "192.168.10.1/24", "--data-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(out, "use 192.168.10.0/24") {
		t.Fatalf("exit %d, output %q; want a usage error naming the masked prefix", code, out)
	}
	if code, out := run(t, "routes", "reject", "gw"); code != exitUsage || !strings.Contains(out, "NAME PREFIX") {
		t.Fatalf("exit %d, output %q; want a usage error asking for a prefix", code, out)
	}
}
