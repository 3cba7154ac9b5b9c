package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/crypto"
)

// A welcome's list of coordinators is checked like any input, and keeps
// the coordinator that sent it.
func TestWithSender(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	c := func(host string) crypto.Coordinator {
		return crypto.Coordinator{URL: "https://" + host + ":8443", Pin: pin}
	}
	full := make([]crypto.Coordinator, crypto.MaxTokenCoordinators)
	for i := range full {
		full[i] = c(fmt.Sprintf("c%d", i))
	}
	tests := []struct {
		name    string
		list    []crypto.Coordinator
		want    []crypto.Coordinator
		wantErr string
	}{
		{"lists the sender", []crypto.Coordinator{c("a"), c("b")}, []crypto.Coordinator{c("a"), c("b")}, ""},
		{"names the sender otherwise", []crypto.Coordinator{c("b")}, []crypto.Coordinator{c("b"), c("a")}, ""},
		{"full", full, full, ""},
		{"empty", []crypto.Coordinator{}, nil, "no coordinator"},
		{"not https", []crypto.Coordinator{{URL: "http://b:1", Pin: pin}}, nil, "must be https"},
		{"bad pin", []crypto.Coordinator{{URL: "https://b:1", Pin: "x"}}, nil, "not a hex SHA-256"},
		{"too many", append(slices.Clone(full), c("x")), nil, "more than the 16 allowed"},
		{"twice", []crypto.Coordinator{c("b"), c("b")}, nil, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withSender(tt.list, c("a"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("withSender = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
