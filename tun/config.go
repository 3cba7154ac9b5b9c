package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Config is the OS set-up of a TUN device.
type Config struct {
	// Name is the device's actual name, as reported by Device.Name.
	Name string
	MTU  int
	// Addresses are the node's overlay addresses with the overlay network's
	// prefix length, e.g. 100.88.0.5/16 and fd6d:6573:686e::5/48.
	Addresses []netip.Prefix
	// Routes are the overlay networks routed via the device, e.g.
	// 100.88.0.0/16 and fd6d:6573:686e::/48. On Linux a route equal to an
	// address's own network is the kernel's connected route and is left to it.
	Routes []netip.Prefix
}

// validate checks everything but the MTU, which Deconfigure does not need.
func (c Config) validate() error {
	var errs []error
	if err := validateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.Addresses {
		if err := validPrefix("address", p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.Routes {
		if err := validRoute(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w for %q: %w", ErrInvalidConfig, c.Name, err)
	}
	return nil
}

// validateWithMTU is validate plus the MTU range, for Configure.
func (c Config) validateWithMTU() error {
	err := c.validate()
	if mtuErr := validateMTU(c.MTU); mtuErr != nil {
		err = errors.Join(err, fmt.Errorf("%w for %q: %w", ErrInvalidConfig, c.Name, mtuErr))
	}
	return err
}

// validRoute checks a route: a valid prefix without host bits.
func validRoute(p netip.Prefix) error {
	if err := validPrefix("route", p); err != nil {
		return err
	}
	if p != p.Masked() {
		return fmt.Errorf("route %s has host bits set: use %s", p, p.Masked())
	}
	return nil
}

func validPrefix(what string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%s %s is not a valid prefix: write it as ADDRESS/BITS, e.g. 100.88.0.5/16", what, p)
	case p.Addr().Is4In6():
		return fmt.Errorf("%s %s is IPv4-mapped IPv6: write %s as plain IPv4 with an IPv4 prefix length",
			what, p, p.Addr().Unmap())
	}
	return nil
}

// ipNet converts a prefix to the net.IPNet that netlink and ifconfig expect,
// keeping the address bits (an interface address, not a network).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
