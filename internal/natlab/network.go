package natlab

import (
	"net/netip"
	"time"
)

// network is one routing domain: the internet, or the inside LAN of a NAT.
// Separate LANs may reuse addresses, as real ones do.
type network struct {
	name     string
	nat      *NAT // whose inside this is; nil for the internet
	hosts    map[netip.Addr]*Host
	nats     map[netip.Addr]*NAT // NATs whose public side sits here
	hostBase netip.Addr          // first automatic host address
	natBase  netip.Addr          // first automatic NAT public address
}

func newNetwork(name string, nat *NAT, hostBase, natBase netip.Addr) *network {
	return &network{
		name:     name,
		nat:      nat,
		hosts:    make(map[netip.Addr]*Host),
		nats:     make(map[netip.Addr]*NAT),
		hostBase: hostBase,
		natBase:  natBase,
	}
}

func (n *network) inUse(ip netip.Addr) bool {
	return n.hosts[ip] != nil || n.nats[ip] != nil
}

// alloc returns the first free address from base. It skips at most one
// address per host or NAT on the network, so it always ends.
func (n *network) alloc(base netip.Addr) netip.Addr {
	ip := base
	for n.inUse(ip) {
		ip = ip.Next()
	}
	return ip
}

// packet is one datagram in flight. Routing rewrites src and dst in place
// as it crosses NATs; data is the sender's bytes, copied once on write.
type packet struct {
	from     *Host // the sending host, named in the log
	src, dst netip.AddrPort
	data     []byte
	ttl      int // IPv4 TTL or IPv6 hop limit left
}

// DefaultTTL is what a host's packets start with: Linux's
// net.ipv4.ip_default_ttl.
const DefaultTTL = 64

// forward is one router hop (RFC 1812 §5.3.1, RFC 8200 §3): a router
// forwards a packet only with TTL left to spend, and spends one. It
// reports false for a packet that dies here.
func (p *packet) forward() bool {
	if p.ttl <= 1 {
		return false
	}
	p.ttl--
	return true
}

// delayed is a packet held back by its sender's latency.
type delayed struct {
	due time.Time
	seq uint64
	p   *packet
}

// delayQueue is a min-heap of delayed packets (container/heap).
type delayQueue []delayed

func (q delayQueue) Len() int { return len(q) }
func (q delayQueue) Less(i, j int) bool {
	if q[i].due.Equal(q[j].due) {
		return q[i].seq < q[j].seq
	}
	return q[i].due.Before(q[j].due)
}
func (q delayQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)   { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*q = old[:len(old)-1]
	return d
}
