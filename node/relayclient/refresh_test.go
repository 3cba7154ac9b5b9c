package relayclient

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// The refresh follows the measured mapping lifetime only within its
// bounds: never below the default (a NAT that forgets in 20 s), never
// beyond what the relay's binding idle time covers.
func TestSetRefreshBounds(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{time.Second, wire.RelayRefresh},
		{20 * time.Second, 20 * time.Second},
		{92 * time.Second, wire.MaxRelayRefresh},
	} {
		r := &Relays{kick: make(chan struct{}, 1)}
		r.SetRefresh(tc.in)
		if got := time.Duration(r.refresh.Load()); got != tc.want {
			t.Errorf("SetRefresh(%v) stored %v, want %v", tc.in, got, tc.want)
		}
	}
	if wire.RelayBindingIdle < 4*wire.MaxRelayRefresh {
		t.Errorf("the relay forgets a binding after %v, before a node at the longest refresh (%v) stops believing in it", wire.RelayBindingIdle, wire.MaxRelayRefresh)
	}
}
