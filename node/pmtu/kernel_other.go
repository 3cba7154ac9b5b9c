//go:build !linux

package pmtu

import (
	"errors"
	"net/netip"
)

// KernelPathMTU is not available here: probes and GSO batches go by their
// own results alone.
func KernelPathMTU(netip.Addr) (int, error) { return 0, errors.ErrUnsupported }
