package wire

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

func pathKey(s string) crypto.PublicKey { return crypto.PublicKey(sha256.Sum256([]byte(s))) }

func TestPathReportRoundTrip(t *testing.T) {
	entries := []PathEntry{
		{Peer: pathKey("a"), Kind: PathDirectUDP, RTT: 1200 * time.Microsecond},
		{Peer: pathKey("b"), Kind: PathDirectTCP},
		{Peer: pathKey("c"), Kind: PathRelayedUDP, Via: ViaRelayNode, Why: WhyHardNATs, RTT: 35 * time.Millisecond},
		{Peer: pathKey("d"), Kind: PathRelayedTCP, Via: ViaCoordinator, Why: WhyUDPBlocked},
		{Peer: pathKey("e"), Kind: PathNone},
	}
	b := AppendPathReport(nil, entries)
	if len(b) != len(entries)*PathEntryLen {
		t.Fatalf("%d entries packed into %d bytes, want %d", len(entries), len(b), len(entries)*PathEntryLen)
	}
	got, err := ParsePathReport(b)
	if err != nil || !reflect.DeepEqual(got, entries) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, entries)
	}
}

func TestPathReportRTT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out time.Duration
	}{
		{"rounded down to the unit", 1234 * time.Microsecond, 1200 * time.Microsecond},
		{"longer than the format holds", time.Minute, MaxPathRTT},
		{"negative", -time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePathReport(AppendPathReport(nil, []PathEntry{{Peer: pathKey("a"), Kind: PathDirectUDP, RTT: tc.in}}))
			if err != nil || got[0].RTT != tc.out {
				t.Fatalf("RTT %v reported as %+v, %v; want %v", tc.in, got, err, tc.out)
			}
		})
	}
}

func TestParsePathReportRefuses(t *testing.T) {
	one := func(e PathEntry) []byte { return AppendPathReport(nil, []PathEntry{e}) }
	a := pathKey("a")
	many := make([]PathEntry, MaxPathReportPeers+1)
	for i := range many {
		many[i] = PathEntry{Peer: pathKey(strings.Repeat("x", i)), Kind: PathNone}
	}
	for _, tc := range []struct {
		name, want string
		b          []byte
	}{
		{"a partial entry", "whole number", one(PathEntry{Peer: a, Kind: PathNone})[:PathEntryLen-1]},
		{"kind zero", "unknown path kind 0", one(PathEntry{Peer: a})},
		{"kind past the last", "unknown path kind 6", one(PathEntry{Peer: a, Kind: 6})},
		{"unknown reason", "unknown relay reason 9", one(PathEntry{Peer: a, Kind: PathRelayedUDP, Via: ViaCoordinator, Why: 9})},
		{"relayed without a relay", "with relay 0", one(PathEntry{Peer: a, Kind: PathRelayedUDP})},
		{"relayed through an unknown relay", "with relay 3", one(PathEntry{Peer: a, Kind: PathRelayedTCP, Via: 3})},
		{"direct with a relay", "only relayed paths", one(PathEntry{Peer: a, Kind: PathDirectUDP, Via: ViaCoordinator})},
		{"direct with a reason", "only relayed paths", one(PathEntry{Peer: a, Kind: PathDirectTCP, Why: WhyHardNATs})},
		{"a peer twice", "appears twice", AppendPathReport(nil, []PathEntry{{Peer: a, Kind: PathNone}, {Peer: a, Kind: PathDirectUDP}})},
		{"too many peers", "at most 1024", AppendPathReport(nil, many)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePathReport(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParsePathReport: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzParsePathReport checks that a report either fails or holds at most
// MaxPathReportPeers valid entries that pack back into the same bytes.
func FuzzParsePathReport(f *testing.F) {
	f.Add(AppendPathReport(nil, []PathEntry{
		{Peer: pathKey("a"), Kind: PathDirectUDP, RTT: time.Millisecond},
		{Peer: pathKey("b"), Kind: PathRelayedUDP, Via: ViaRelayNode, Why: WhyHardNATs},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParsePathReport(b)
		if err != nil {
			return
		}
		if len(entries) > MaxPathReportPeers {
			t.Fatalf("%d entries accepted; at most %d", len(entries), MaxPathReportPeers)
		}
		for _, e := range entries {
			if e.check() != nil {
				t.Fatalf("accepted an invalid entry %+v", e)
			}
		}
		if enc := AppendPathReport(nil, entries); !bytes.Equal(enc, b) {
			t.Fatalf("ParsePathReport(%x) = %+v packs back as %x", b, entries, enc)
		}
	})
}
