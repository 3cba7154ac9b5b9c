package netlab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Lose makes the coordinator's host vanish, as a crashed machine or a cut
// link does, unlike Kill, after which its kernel still resets every
// connection: its process stops (SIGSTOP by PID), and every packet to or
// from it is dropped in its namespace, so nothing answers, not even its
// kernel's ACKs and keepalive replies. That covers its control and STUN
// ports, and its connections on the namespace's loopback (its database
// connections: PostgreSQL runs there), by their local ports; a stopped
// process opens no new ones. Kill ends it for good; the rules go with the
// namespace.
func (c *Coordinator) Lose(ctx context.Context) error {
	p := c.Proc()
	if p == nil || !p.Running() {
		return fmt.Errorf("%s is not running", c.name)
	}
	if err := syscall.Kill(p.PID(), syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stop %s (pid %d): %w", c.name, p.PID(), err)
	}
	out, err := c.NS.Exec(ctx, "ss", "-tnpH", "state", "established")
	if err != nil {
		return fmt.Errorf("%s's connections: %w", c.name, err)
	}
	local := ownPorts(out, p.PID(), c.port)
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority filter - 10; policy accept;
		tcp dport %[2]d drop
		udp dport { %[3]d, %[4]d } drop
	}
	chain out {
		type filter hook output priority filter - 10; policy accept;
		tcp sport %[2]d drop
		udp sport { %[3]d, %[4]d } drop
`, loseTable(c.name), c.port, c.stun, c.stunAlt)
	if len(local) > 0 {
		set := strings.Join(local, ", ")
		rules += fmt.Sprintf("\t\toifname \"lo\" tcp sport { %[1]s } drop\n\t\toifname \"lo\" tcp dport { %[1]s } drop\n", set)
	}
	rules += "\t}\n}\n"
	if _, err := c.NS.ExecInput(ctx, rules, c.lab.tools.NFT, "-f", "-"); err != nil {
		return fmt.Errorf("cut %s off: %w", c.name, err)
	}
	return nil
}

// loseTable names the nftables table that cuts coordinator name off.
func loseTable(name string) string { return "lost_" + strings.ReplaceAll(name, "-", "_") }

// ownPorts lists the local ports, other than listen, of the connections
// in ss's output (ss -tnpH state established: queues, local, peer,
// process) that belong to process pid.
func ownPorts(ss string, pid, listen int) []string {
	var ports []string
	for line := range strings.Lines(ss) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.Contains(line, "pid="+strconv.Itoa(pid)+",") {
			continue
		}
		local := f[2]
		port := local[strings.LastIndexByte(local, ':')+1:]
		if n, err := strconv.Atoi(port); err == nil && n != listen {
			ports = append(ports, port)
		}
	}
	return ports
}
