package routes

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Forwarding switches: IPv4's, and IPv6's for every interface.
const (
	forward4 = "/proc/sys/net/ipv4/ip_forward"
	forward6 = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// nftTimeout bounds one nft run; it only talks to the kernel.
const nftTimeout = 10 * time.Second

// Gateway makes this node forward traffic from the overlay to the routes
// it serves (Linux: the kernel's forwarding switches and an nftables
// table of its own, gatewayRules). Set and Close are called by one
// goroutine.
type Gateway struct {
	dev  string
	snat bool
	// applied is what the table holds; nil: no table of ours.
	applied []netip.Prefix
	// turnedOn are the forwarding switches this node turned on, to turn
	// off again on Close; the host's own settings are left alone.
	turnedOn []string
}

// NewGateway serves routes through the TUN device dev, masquerading
// subnet traffic too when snat.
func NewGateway(dev string, snat bool) *Gateway { return &Gateway{dev: dev, snat: snat} }

// Set serves exactly serving; none removes the table and restores the
// forwarding switches.
func (g *Gateway) Set(serving []netip.Prefix) error {
	if len(serving) == 0 {
		return g.Close()
	}
	if slices.Equal(serving, g.applied) {
		return nil
	}
	if strings.ContainsAny(g.dev, `"\`) {
		return fmt.Errorf("interface %q: a name with quotes or backslashes can't go into nftables rules", g.dev)
	}
	v4, v6 := families(serving)
	var errs []error
	for _, sw := range []struct {
		on   bool
		path string
		name string
	}{{v4, forward4, "net.ipv4.ip_forward"}, {v6, forward6, "net.ipv6.conf.all.forwarding"}} {
		if sw.on {
			errs = append(errs, g.turnOn(sw.path, sw.name))
		}
	}
	if err := nft(gatewayRules(g.dev, serving, g.snat)); err != nil {
		return errors.Join(append(errs, err)...)
	}
	g.applied = slices.Clone(serving)
	return errors.Join(errs...)
}

// Close deletes the table, a crashed run's too, and turns off the
// forwarding this node turned on.
func (g *Gateway) Close() error {
	var errs []error
	if _, err := exec.LookPath("nft"); err == nil || g.applied != nil {
		// Creating it first makes the delete succeed when there is none.
		errs = append(errs, nft(fmt.Sprintf("table inet %s\ndelete table inet %s\n", nftTable, nftTable)))
	}
	g.applied = nil
	for _, path := range g.turnedOn {
		if err := os.WriteFile(path, []byte("0"), 0); err != nil {
			errs = append(errs, fmt.Errorf("restore %s to 0: %w", path, err))
		}
	}
	g.turnedOn = nil
	return errors.Join(errs...)
}

// turnOn sets a forwarding switch to 1, remembering it if it was 0.
func (g *Gateway) turnOn(path, name string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if strings.TrimSpace(string(b)) != "0" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		return fmt.Errorf("%s is 0 and meshnode may not turn it on (%w): run 'sysctl -w %s=1' and keep it in /etc/sysctl.d, or the served routes are not forwarded", name, err, name)
	}
	if !slices.Contains(g.turnedOn, path) {
		g.turnedOn = append(g.turnedOn, path)
	}
	return nil
}

// nft runs an nftables script.
func nft(script string) error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("serving routes needs nftables: %w (apt-get install nftables)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
