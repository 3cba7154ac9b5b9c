package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// wire is how the lab's veths carry UDP.
type wire int

const (
	// offloadWire keeps veth's defaults: a sender's UDP GSO batch crosses
	// every veth and router as one buffer.
	offloadWire wire = iota
	// packetWire turns segmentation and receive offloads off, so every
	// hop carries MTU-sized datagrams, as a physical network does.
	packetWire
)

var wires = []wire{offloadWire, packetWire}

func (w wire) String() string {
	if w == packetWire {
		return "packet wire"
	}
	return "offload wire"
}

// offloadFeatures are the ethtool features the packet wire turns off:
// tx-udp-segmentation (a UDP GSO buffer passes the veth whole), gso (the
// kernel's own segmentation is deferred to the device) and gro (a receiver
// coalesces datagrams back into one buffer).
var offloadFeatures = []string{"tx-udp-segmentation", "gso", "gro"}

// ethtool finds ethtool, naming its Debian package when it is missing.
func ethtool() (string, error) {
	p, err := exec.LookPath("ethtool")
	if err != nil {
		return "", errors.New("ethtool not found; install it with: apt-get install ethtool (make deps does)")
	}
	return p, nil
}

// setWire turns the offload features on or off on every veth end in
// every namespace of the lab.
func setWire(ctx context.Context, bin string, lab *netlab.Lab, w wire) error {
	state := "on"
	if w == packetWire {
		state = "off"
	}
	for _, n := range lab.Namespaces() {
		out, err := n.Exec(ctx, "ip", "-j", "link", "show", "type", "veth")
		if err != nil {
			return err
		}
		ifs, err := parseLinks(out)
		if err != nil {
			return fmt.Errorf("veths in %s: %w", n.Name, err)
		}
		for _, ifname := range ifs {
			args := []string{"-K", ifname}
			for _, f := range offloadFeatures {
				args = append(args, f, state)
			}
			if _, err := n.Exec(ctx, bin, args...); err != nil {
				return fmt.Errorf("%s on %s in %s: %w", w, ifname, n.Name, err)
			}
		}
	}
	return nil
}

// parseLinks reads the interface names from `ip -j link show`.
func parseLinks(out string) ([]string, error) {
	var links []struct {
		Name string `json:"ifname"`
	}
	if strings.TrimSpace(out) == "" { // some versions print nothing for no match
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("ip -j link: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names, nil
}
