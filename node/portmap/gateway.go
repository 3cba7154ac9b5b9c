package portmap

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// procRoute is Linux's IPv4 routing table.
const procRoute = "/proc/net/route"

// Route flags of /proc/net/route (linux/route.h).
const (
	rtfUp      = 0x1
	rtfGateway = 0x2
)

// errNoDefaultRoute means the host has no IPv4 default route via a gateway.
var errNoDefaultRoute = errors.New("no IPv4 default route via a gateway")

// DefaultGateway returns the IPv4 default gateway: on Linux from
// /proc/net/route, on macOS from `route -n get default`.
func DefaultGateway(ctx context.Context) (netip.Addr, error) {
	switch runtime.GOOS {
	case "linux":
		f, err := os.Open(procRoute)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("default gateway: %w", err)
		}
		defer f.Close()
		gw, err := parseProcRoute(f, binary.NativeEndian)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("default gateway from %s: %w", procRoute, err)
		}
		return gw, nil
	case "darwin":
		out, err := exec.CommandContext(ctx, "route", "-n", "get", "default").Output()
		if err != nil {
			return netip.Addr{}, fmt.Errorf("default gateway: route -n get default: %w", err)
		}
		gw, err := parseRouteGet(out)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("default gateway from route -n get default: %w", err)
		}
		return gw, nil
	}
	return netip.Addr{}, fmt.Errorf("default gateway: not supported on %s", runtime.GOOS)
}

// parseProcRoute finds the default route with the lowest metric in
// /proc/net/route. The kernel prints addresses as the hex of a 32-bit word
// in host byte order, so order is the host's (binary.NativeEndian).
func parseProcRoute(r io.Reader, order binary.ByteOrder) (netip.Addr, error) {
	sc := bufio.NewScanner(r)
	sc.Scan() // header: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
	var best netip.Addr
	bestMetric := uint64(0)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		gw, err2 := strconv.ParseUint(f[2], 16, 32)
		metric, err3 := strconv.ParseUint(f[6], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return netip.Addr{}, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		if flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway {
			continue
		}
		var a [4]byte
		order.PutUint32(a[:], uint32(gw))
		if !best.IsValid() || metric < bestMetric {
			best, bestMetric = netip.AddrFrom4(a), metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, err
	}
	if !best.IsValid() {
		return netip.Addr{}, errNoDefaultRoute
	}
	return best, nil
}

// parseRouteGet reads the "gateway:" line of macOS's `route -n get
// default`. A default route through a tunnel names an interface instead
// ("link#12"); that has no gateway to ask.
func parseRouteGet(out []byte) (netip.Addr, error) {
	for line := range strings.Lines(string(out)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || k != "gateway" {
			continue
		}
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("gateway %q: %w", strings.TrimSpace(v), errNoDefaultRoute)
		}
		return a, nil
	}
	return netip.Addr{}, errNoDefaultRoute
}
