package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Witness is a TCP server in a namespace (a host on the lab's internet, a
// LAN host) that records the source address of every connection it
// accepts: who it sees a client as, after every NAT on the way.
type Witness struct {
	ln       net.Listener
	done     chan struct{}
	accepted chan struct{} // capacity 1: a connection was recorded

	mu   sync.Mutex
	seen []netip.Addr
}

// Witness listens on addr in n until Close.
func (n *Netns) Witness(addr netip.AddrPort) (*Witness, error) {
	w := &Witness{done: make(chan struct{}), accepted: make(chan struct{}, 1)}
	if err := n.Do(func() (err error) {
		w.ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("witness on %v in %s: %w", addr, n.Name, err)
	}
	go w.serve()
	return w, nil
}

func (w *Witness) serve() {
	defer close(w.done)
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			w.mu.Lock()
			w.seen = append(w.seen, ap.Addr().Unmap())
			w.mu.Unlock()
			select {
			case w.accepted <- struct{}{}:
			default:
			}
		}
		c.Close()
	}
}

// Seen lists the sources of the connections so far, oldest first.
func (w *Witness) Seen() []netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// SeenAfter waits, within timeout, until the witness has recorded more
// than before connections, and returns the newest source: a client's
// connect returns before the server's accept runs.
func (w *Witness) SeenAfter(before int, timeout time.Duration) (netip.Addr, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if seen := w.Seen(); len(seen) > before {
			return seen[len(seen)-1], nil
		}
		select {
		case <-w.accepted:
		case <-t.C:
			return netip.Addr{}, fmt.Errorf("no connection recorded within %v", timeout)
		}
	}
}

// Close stops listening.
func (w *Witness) Close() error {
	err := w.ln.Close()
	<-w.done
	return err
}

// Connect opens a TCP connection from n to addr and closes it, within
// timeout: a witness records it.
func (n *Netns) Connect(ctx context.Context, addr netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := n.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("connect from %s to %v: %w", n.Name, addr, err)
	}
	return c.Close()
}

// sourcesTable is the table SourceCounter adds to a namespace.
const sourcesTable = "meshlab_sources"

// SourceCounter counts, in a namespace, every packet that arrives from
// some addresses, whatever its protocol: proof that nothing from them got
// there.
type SourceCounter struct {
	ns *Netns
}

// CountFrom starts counting the packets n receives from addrs, from zero.
func (n *Netns) CountFrom(ctx context.Context, addrs ...netip.Addr) (*SourceCounter, error) {
	var v4, v6 []string
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a.String())
		} else {
			v6 = append(v6, a.String())
		}
	}
	var rs strings.Builder
	// A second call starts afresh: the table is replaced in one transaction.
	fmt.Fprintf(&rs, "table inet %s\ndelete table inet %s\n", sourcesTable, sourcesTable)
	fmt.Fprintf(&rs, "table inet %s {\n\tcounter from {}\n", sourcesTable)
	rs.WriteString("\tchain input {\n\t\ttype filter hook prerouting priority raw - 10; policy accept;\n")
	if len(v4) > 0 {
		fmt.Fprintf(&rs, "\t\tip saddr { %s } counter name from\n", strings.Join(v4, ", "))
	}
	if len(v6) > 0 {
		fmt.Fprintf(&rs, "\t\tip6 saddr { %s } counter name from\n", strings.Join(v6, ", "))
	}
	rs.WriteString("\t}\n}\n")
	if _, err := n.ExecInput(ctx, rs.String(), n.lab.tools.NFT, "-f", "-"); err != nil {
		return nil, fmt.Errorf("count packets from %v in %s: %w", addrs, n.Name, err)
	}
	return &SourceCounter{ns: n}, nil
}

// Packets is how many packets arrived from the addresses so far.
func (c *SourceCounter) Packets(ctx context.Context) (int, error) {
	out, err := c.ns.Exec(ctx, c.ns.lab.tools.NFT, "list", "counter", "inet", sourcesTable, "from")
	if err != nil {
		return 0, fmt.Errorf("read the source counter in %s: %w", c.ns.Name, err)
	}
	m := counterPackets.FindStringSubmatch(out)
	if m == nil {
		return 0, errors.New("no packet count in " + strconv.Quote(out))
	}
	return strconv.Atoi(m[1])
}
