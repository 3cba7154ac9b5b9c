package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/discovery"
)

// netcheckCLI runs `meshnode netcheck args...`. Only the input errors are
// run end to end: a real run would probe this host's real gateway, which
// tests must not touch (the probes are tested against fakes in
// node/discovery and node/portmap).
func netcheckCLI(args ...string) (int, string) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"netcheck"}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		return exitCode(err), err.Error()
	}
	return exitOK, out.String()
}

func TestNetcheckInputErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "state.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	noSTUN := write("nostun", `{"coordinator_url":"https://coord.example.com:8443"}`)
	damaged := write("damaged", `{"stun": [`)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no port", []string{"--stun", "coord.example.com"}, exitUsage, []string{`--stun "coord.example.com"`, "HOST:PORT"}},
		{"no host", []string{"--stun", ":3478"}, exitUsage, []string{`--stun ":3478"`, "no host"}},
		{"port 0", []string{"--stun", "coord.example.com:0"}, exitUsage, []string{`port "0"`, "1 to 65535"}},
		{"port too big", []string{"--stun", "coord.example.com:70000"}, exitUsage, []string{`port "70000"`}},
		{"empty", []string{"--stun", ""}, exitUsage, []string{`--stun ""`}},
		{"not joined", []string{"--state-dir", filepath.Join(dir, "none")}, exitUsage, []string{filepath.Join(dir, "none", "state.json"), "does not exist", "--stun HOST:PORT"}},
		{"no STUN servers in state", []string{"--state-dir", noSTUN}, exitUsage, []string{filepath.Join(noSTUN, "state.json"), "lists no STUN servers", "--stun HOST:PORT"}},
		{"damaged state", []string{"--state-dir", damaged}, exitFailure, []string{filepath.Join(damaged, "state.json"), "damaged", "--stun HOST:PORT"}},
		{"server as an argument", []string{"coord.example.com:3478"}, exitUsage, []string{`"coord.example.com:3478"`, "--stun HOST:PORT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := netcheckCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (%s)", code, tc.code, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

func TestStateSTUN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := `{"coordinator_url":"https://coord.example.com:8443","stun":["coord.example.com:3478","198.18.0.1:3478"]}`
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := stateSTUN(dir)
	if err != nil || len(got) != 2 || got[0] != "coord.example.com:3478" {
		t.Fatalf("stateSTUN = %q, %v; want the primary first", got, err)
	}
	var u usageError
	if _, err := stateSTUN(t.TempDir()); !errors.As(err, &u) {
		t.Errorf("missing state: %v, want a usage error", err)
	}
}

func TestNetcheckVerdict(t *testing.T) {
	t.Parallel()
	udp := func(mapping wire.NATMapping, filtering wire.NATFiltering, alloc wire.PortAllocation) discovery.Report {
		return discovery.Report{UDP: true, Mapping: mapping, Filtering: filtering, PortAllocation: alloc}
	}
	tests := []struct {
		name string
		r    discovery.Report
		want string
	}{
		{"UDP blocked", discovery.Report{Mapping: wire.MappingUnknown}, "UDP blocked: traffic will use the TCP relay"},
		{"no NAT", udp(wire.MappingNone, wire.FilteringNone, wire.PortAllocPreserve), "Direct connections: likely with all peers (no NAT)"},
		{"no NAT, firewall", udp(wire.MappingNone, wire.FilteringAddressPortDependent, wire.PortAllocPreserve), "hole punching"},
		{"cone", udp(wire.MappingEndpointIndependent, wire.FilteringAddressPortDependent, wire.PortAllocUnknown),
			"Direct connections: likely with most peers (endpoint-independent mapping)"},
		{"address-dependent", udp(wire.MappingAddressDependent, wire.FilteringAddressDependent, wire.PortAllocSequential), "Moderate NAT (address-dependent mapping)"},
		{"symmetric random", udp(wire.MappingAddressPortDependent, wire.FilteringAddressPortDependent, wire.PortAllocRandom),
			"Hard NAT (address-and-port-dependent mapping, random ports): peers behind hard NATs will use the relay"},
		{"symmetric sequential", udp(wire.MappingAddressPortDependent, wire.FilteringAddressPortDependent, wire.PortAllocSequential), "sequential ports): peers predict the next ports"},
		{"unknown", udp(wire.MappingUnknown, wire.FilteringUnknown, wire.PortAllocUnknown), "NAT type unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := netcheckVerdict(tc.r); !strings.Contains(got, tc.want) {
				t.Errorf("verdict %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPrintNetcheck(t *testing.T) {
	t.Parallel()
	r := discovery.Report{
		UDP: true, PublicAddress: "198.18.0.7:41820", Mapping: wire.MappingAddressPortDependent,
		Filtering: wire.FilteringAddressPortDependent, PortAllocation: wire.PortAllocSequential, PortStep: 2,
		Hairpin: new(false), LatencyMs: new(23.456), STUNServer: "coord.example.com:3478",
		PortMapping: discovery.PortMapping{NATPMP: true, Gateway: "192.168.1.1"},
		Notes:       []string{"a note"},
	}
	var b bytes.Buffer
	printNetcheck(&b, r)
	out := b.String()
	for _, want := range []string{
		"Netcheck against coord.example.com:3478", "Public address:   198.18.0.7:41820",
		"NAT mapping:      address-and-port-dependent", "Port allocation:  sequential (step 2)",
		"Hairpinning:      no", "Latency:          23.5 ms",
		"Port mapping:     NAT-PMP yes, PCP no, UPnP no (gateway 192.168.1.1)", "note: a note",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != netcheckVerdict(r) {
		t.Errorf("last line %q, want the verdict", last)
	}
}
