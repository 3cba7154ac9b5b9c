package tun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// macOS has no netlink; the set-up runs the system tools, as wg-quick's
// darwin.bash does.
const (
	ifconfigPath = "/sbin/ifconfig"
	routePath    = "/sbin/route"
	// commandTimeout bounds one ifconfig or route run. They only talk to the
	// kernel and finish in milliseconds; a run this long is hung.
	commandTimeout = 10 * time.Second
)

// Messages (strerror text, or route(8)'s own) that make a step a no-op.
const (
	msgExists     = "file exists"                    // EEXIST: route already present
	msgNotInTable = "not in table"                   // route(8) delete: ESRCH
	msgNoSuchAddr = "can't assign requested address" // EADDRNOTAVAIL: address already gone
)

// Configure sets the device's MTU, adds its addresses, brings it up and adds
// its routes. utun is point-to-point, so each address is its own destination
// and every overlay network needs an explicit route. It is idempotent.
func Configure(cfg Config) error {
	if err := cfg.validateWithMTU(); err != nil {
		return err
	}
	ctx := context.Background()
	if err := setMTU(cfg.Name, cfg.MTU); err != nil {
		return fmt.Errorf("configure %s: %w", cfg.Name, err)
	}
	for _, p := range cfg.Addresses {
		if err := run(ctx, msgExists, ifconfigPath, addrArgs(cfg.Name, p, "alias")...); err != nil {
			return fmt.Errorf("configure %s: add address %s: %w", cfg.Name, p, err)
		}
	}
	if err := run(ctx, "", ifconfigPath, cfg.Name, "up"); err != nil {
		return fmt.Errorf("configure %s: set link up: %w", cfg.Name, err)
	}
	for _, p := range cfg.Routes {
		if err := run(ctx, msgExists, routePath, routeArgs(cfg.Name, p, "add")...); err != nil {
			return fmt.Errorf("configure %s: add route %s: %w", cfg.Name, p, err)
		}
	}
	return nil
}

// Deconfigure removes the routes and addresses Configure added. Closing a
// utun destroys it with its addresses and routes, so anything already gone is
// not an error.
func Deconfigure(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if _, err := net.InterfaceByName(cfg.Name); err != nil {
		// The utun is gone (closed), and its addresses and routes with it.
		return nil
	}
	ctx := context.Background()
	var errs []error
	for _, p := range cfg.Routes {
		if err := run(ctx, msgNotInTable, routePath, routeArgs(cfg.Name, p, "delete")...); err != nil {
			errs = append(errs, fmt.Errorf("deconfigure %s: delete route %s: %w", cfg.Name, p, err))
		}
	}
	for _, p := range cfg.Addresses {
		if err := run(ctx, msgNoSuchAddr, ifconfigPath, addrArgs(cfg.Name, p, "-alias")...); err != nil {
			errs = append(errs, fmt.Errorf("deconfigure %s: delete address %s: %w", cfg.Name, p, err))
		}
	}
	return errors.Join(errs...)
}

// addrArgs builds "ifconfig NAME inet A A netmask M alias" for IPv4 (A is
// also the point-to-point destination) and "ifconfig NAME inet6 A prefixlen
// 128 alias" for IPv6; the overlay network is reached through its route.
func addrArgs(name string, p netip.Prefix, op string) []string {
	a := p.Addr().String()
	if p.Addr().Is4() {
		if op == "-alias" {
			return []string{name, "inet", a, op}
		}
		mask := net.IP(ipNet(p).Mask).String()
		return []string{name, "inet", a, a, "netmask", mask, op}
	}
	if op == "-alias" {
		return []string{name, "inet6", a, op}
	}
	return []string{name, "inet6", a, "prefixlen", "128", op}
}

// routeArgs builds "route -n add|delete -inet[6] -net PREFIX -interface NAME".
func routeArgs(name string, p netip.Prefix, op string) []string {
	family := "-inet"
	if p.Addr().Is6() {
		family = "-inet6"
	}
	return []string{"-n", op, family, "-net", p.String(), "-interface", name}
}

// setMTU sets the MTU of the device name; water leaves it at the default.
func setMTU(name string, mtu int) error {
	if err := run(context.Background(), "", ifconfigPath, name, "mtu", strconv.Itoa(mtu)); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
	}
	return nil
}

// run runs a system tool and returns its output in the error. Output that
// contains ignore (case-insensitive) means the step was already done.
func run(ctx context.Context, ignore, path string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	text := strings.TrimSpace(string(out))
	if ignore != "" && strings.Contains(strings.ToLower(text), ignore) {
		return nil
	}
	return fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, text)
}
