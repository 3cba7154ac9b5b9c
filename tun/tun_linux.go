package tun

import (
	"fmt"
	"strings"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// cloneDevicePath is the TUN clone device; without it the kernel lacks TUN.
const cloneDevicePath = "/dev/net/tun"

const permissionHint = "creating a TUN device needs CAP_NET_ADMIN: run meshnode as root or grant " +
	"the capability (setcap cap_net_admin+ep /path/to/meshnode, or " +
	"AmbientCapabilities=CAP_NET_ADMIN in the systemd unit)"

// DefaultName returns the device name used when none is configured.
func DefaultName() string { return "mesh0" }

// validateName applies the kernel's dev_valid_name rules: 1 to IFNAMSIZ-1
// bytes, not "." or "..", no '/', ':' or whitespace.
func validateName(name string) error {
	var reason string
	switch {
	case name == "":
		reason = "it is empty"
	case len(name) >= unix.IFNAMSIZ:
		reason = fmt.Sprintf("it is longer than %d bytes", unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		reason = "it is a path element"
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		reason = "it contains '/', ':' or whitespace"
	default:
		return nil
	}
	return fmt.Errorf("%w %q: %s; use a short name such as %q", ErrInvalidName, name, reason, DefaultName())
}

func waterConfig(name string) water.Config {
	return water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	}
}
