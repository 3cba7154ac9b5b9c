package tun

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/songgao/water"
)

// utunAny asks the kernel for the next free utun unit.
const utunAny = "utun"

// cloneDevicePath is empty: utun is built into XNU, so there is no clone
// device that could be missing.
const cloneDevicePath = ""

const permissionHint = "creating a utun device needs root: run meshnode with sudo or as a launchd daemon"

// DefaultName returns the device name used when none is configured: "utun",
// which lets the kernel pick the unit.
func DefaultName() string { return utunAny }

// validateName accepts "utun" or "utunN", the only names macOS allows.
func validateName(name string) error {
	if name == utunAny {
		return nil
	}
	if unit, ok := strings.CutPrefix(name, utunAny); ok {
		// Canonical digits only: the kernel would name "utun07" utun7, and
		// Configure would then look for a device that does not exist.
		if n, err := strconv.ParseUint(unit, 10, 31); err == nil && strconv.FormatUint(n, 10) == unit {
			return nil
		}
	}
	return fmt.Errorf("%w %q: macOS TUN devices are named utun (next free unit) or utunN, e.g. utun7",
		ErrInvalidName, name)
}

func waterConfig(name string) water.Config {
	cfg := water.Config{DeviceType: water.TUN}
	// water rejects the bare "utun"; an empty name asks for the next free unit.
	if name != utunAny {
		cfg.Name = name
	}
	return cfg
}
