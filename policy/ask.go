package policy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/meshnode/meshnode/internal/wire"
)

// Ask answers whether node src (a name or overlay address) may reach
// target (DST[:PORT][/PROTO], see ParseTarget) under r, and by which rule,
// as one line: what 'meshnode policy test' and the web page say. nodes are
// the mesh's nodes r was resolved with.
func (r *Resolved) Ask(nodes []wire.Node, src, target string) (string, error) {
	host, port, proto, err := ParseTarget(target)
	if err != nil {
		return "", err
	}
	from, ok := findNode(nodes, src)
	if !ok {
		return "", fmt.Errorf("SRC %q: no node of that name or address; see 'meshnode nodes list'", src)
	}
	dst, dstName, err := targetAddr(nodes, host)
	if err != nil {
		return "", err
	}
	return verdictText(r.Test(from.Name, dst, proto, port), r.Open(), from.Name, dstName, dst, proto, port), nil
}

func verdictText(v Verdict, open bool, src, dstName string, dst netip.Addr, proto string, port uint16) string {
	what := fmt.Sprintf("%s -> %s %s", src, dst, proto)
	if dstName != "" {
		what = fmt.Sprintf("%s -> %s (%s) %s", src, dstName, dst, proto)
	}
	if proto != wire.ProtoICMP {
		what += "/" + strconv.Itoa(int(port))
	}
	switch {
	case open:
		return "allow: " + what + ": no access policy is set, every node reaches every other"
	case v.Allow:
		return "allow: " + what + ": by rule " + v.Rule
	}
	return "deny: " + what + ": no rule allows it"
}

// ParseTarget reads DST[:PORT][/PROTO]: a name or address, a port for tcp
// and udp, and the protocol (tcp when not given).
func ParseTarget(s string) (host string, port uint16, proto string, err error) {
	proto = wire.ProtoTCP
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s, proto = s[:i], s[i+1:]
		if proto != wire.ProtoTCP && proto != wire.ProtoUDP && proto != wire.ProtoICMP {
			return "", 0, "", fmt.Errorf("DST %q: protocol %q: want tcp, udp or icmp", s+"/"+proto, proto)
		}
	}
	host, portText := s, ""
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		if host, portText, err = net.SplitHostPort(s); err != nil {
			return "", 0, "", fmt.Errorf("DST %q: want NAME:PORT, IPv4:PORT or [IPv6]:PORT: %w", s, err)
		}
	}
	switch {
	case proto == wire.ProtoICMP && portText != "":
		return "", 0, "", fmt.Errorf("DST %q: icmp has no ports; write %s/icmp", s, host)
	case proto == wire.ProtoICMP:
		return host, 0, proto, nil
	case portText == "":
		return "", 0, "", fmt.Errorf("DST %q: %s needs a port, such as %s:443/%s", s, proto, host, proto)
	}
	p, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || p == 0 {
		return "", 0, "", fmt.Errorf("DST %q: port %q is not a port (1-65535)", s, portText)
	}
	return host, uint16(p), proto, nil
}

// findNode finds a node by name or overlay address.
func findNode(nodes []wire.Node, nameOrAddr string) (wire.Node, bool) {
	a, err := netip.ParseAddr(nameOrAddr)
	for _, n := range nodes {
		if n.Name == nameOrAddr || (err == nil && slices.Contains(n.Addresses, a.Unmap())) {
			return n, true
		}
	}
	return wire.Node{}, false
}

// targetAddr is the address DST names, and the node's name when it is one.
func targetAddr(nodes []wire.Node, host string) (netip.Addr, string, error) {
	n, isNode := findNode(nodes, host)
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), n.Name, nil
	}
	if !isNode || len(n.Addresses) == 0 {
		return netip.Addr{}, "", fmt.Errorf("DST %q: no node of that name, and not an address; see 'meshnode nodes list'", host)
	}
	return n.Addresses[0], n.Name, nil
}
