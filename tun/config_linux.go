package tun

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Configure sets the device's MTU, adds its addresses, brings it up and adds
// the routes that the addresses do not already imply. It is idempotent:
// addresses and routes that exist are left as they are.
func Configure(cfg Config) error {
	if err := cfg.validateWithMTU(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("configure %s: find device: %w", cfg.Name, err)
	}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("configure %s: set MTU %d: %w", cfg.Name, cfg.MTU, err)
	}
	for _, p := range cfg.Addresses {
		if err := netlink.AddrAdd(link, addr(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("configure %s: add address %s: %w", cfg.Name, p, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("configure %s: set link up: %w", cfg.Name, err)
	}
	for _, p := range cfg.Routes {
		if cfg.connected(p) {
			continue
		}
		if err := netlink.RouteAdd(route(link, p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("configure %s: add route %s: %w", cfg.Name, p, err)
		}
	}
	return nil
}

// Deconfigure removes the routes and addresses Configure added. Closing the
// device removes them too, so a device, address or route that is already
// gone is not an error.
func Deconfigure(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil
		}
		return fmt.Errorf("deconfigure %s: find device: %w", cfg.Name, err)
	}
	var errs []error
	for _, p := range cfg.Routes {
		if cfg.connected(p) {
			continue
		}
		if err := netlink.RouteDel(route(link, p)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("deconfigure %s: delete route %s: %w", cfg.Name, p, err))
		}
	}
	for _, p := range cfg.Addresses {
		if err := netlink.AddrDel(link, addr(p)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("deconfigure %s: delete address %s: %w", cfg.Name, p, err))
		}
	}
	return errors.Join(errs...)
}

// connected reports whether route is the network of one of c's addresses:
// the route the kernel adds by itself with the address (not for host
// prefixes, which get no network route).
func (c Config) connected(route netip.Prefix) bool {
	for _, a := range c.Addresses {
		if a.Bits() < a.Addr().BitLen() && a.Masked() == route {
			return true
		}
	}
	return false
}

// gone reports the errors for a missing route (ESRCH), address
// (EADDRNOTAVAIL) or device (ENODEV, deleted since the lookup).
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

// addr builds the netlink address for p. IPv6 addresses get IFA_F_NODAD:
// ipv6_add_addr then never marks them tentative, so they can be bound the
// moment Configure returns. Without it, kernels may keep a new address
// tentative until the asynchronous DAD work runs, although a TUN link is
// IFF_NOARP and that work can never detect a duplicate (RFC 4862 §5.4).
func addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// route builds a link-scope route for network p through link, marked static
// like a route an administrator added.
func route(link netlink.Link, p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(p),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  unix.RTPROT_STATIC,
	}
}

// setMTU sets the MTU of the device name; water leaves it at the kernel's
// default.
func setMTU(name string, mtu int) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("set MTU of %s: find device: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
	}
	return nil
}
