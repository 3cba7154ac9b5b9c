package relayclient

import (
	"testing"

	"github.com/meshnode/meshnode/crypto"
)

func TestChoose(t *testing.T) {
	key := func(b byte) crypto.PublicKey { return crypto.PublicKey{b} }
	coord := Candidate{Key: key(9), Addr: "coord.example:3478"}
	low := Candidate{Key: key(1), Addr: "192.0.2.1:3478"}
	mid := Candidate{Key: key(5), Addr: "192.0.2.5:3478"}
	high := Candidate{Key: key(7), Addr: "192.0.2.7:3478"}
	tests := []struct {
		name  string
		coord Candidate
		nodes []Candidate
		want  Candidate
	}{
		{"no relay nodes: the coordinator's", coord, nil, coord},
		{"one relay node beats the coordinator", coord, []Candidate{high}, high},
		{"the lowest key wins", coord, []Candidate{mid, low, high}, low},
		{"in any order", coord, []Candidate{high, mid}, mid},
		{"a node without an address is no relay", coord, []Candidate{{Key: key(0)}, high}, high},
		{"the coordinator's key does not compete", Candidate{Key: key(0), Addr: coord.Addr}, []Candidate{high}, high},
		{"relay nodes without a coordinator relay", Candidate{}, []Candidate{mid}, mid},
		{"nothing: none", Candidate{}, nil, Candidate{}},
		{"a coordinator without a relay address: none", Candidate{Key: key(9)}, nil, Candidate{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := choose(tt.coord, tt.nodes); got != tt.want {
				t.Fatalf("choose = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTimingDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Timing
		want Timing
	}{
		{"zero is the default", Timing{}, DefaultTiming()},
		{"set fields are kept", Timing{Retry: 7, TCPGrace: 9}, Timing{Retry: 7, Refresh: refresh, Expiry: expiry, HelloWait: helloWait, TCPGrace: 9, StreamRetry: streamRetry, StreamWrite: writeTimeout, Check: check}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); got != tt.want {
				t.Fatalf("withDefaults = %+v, want %+v", got, tt.want)
			}
		})
	}
}
