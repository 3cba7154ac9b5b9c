package bind

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
)

// UDP GSO and the path MTU. StdNetBind coalesces a batch of datagrams to
// one address into one sendmmsg message with UDP_SEGMENT, and the kernel
// refuses such a message whole when its segments are larger than it sends
// unfragmented on that path: the device's MTU, or a smaller path MTU it
// learned from ICMP "fragmentation needed". Linux says EMSGSIZE ("message
// too long"; EINVAL before 5.10), and every later batch of full-size
// packets would be refused and dropped. The same datagrams sent one by one
// are fragmented by the kernel and get through. So a refused batch is sent
// again split: datagrams within the path's limit still in batches, larger
// ones each on its own. The limit is remembered per route (a route is one
// path), so later batches are split before the kernel has to refuse them.

// refusedBatch reports a send error that means "segments too large for
// this path". EINVAL has other causes: retrying those once split costs one
// more refusal, as they would be refused anyway.
func refusedBatch(err error) bool {
	return errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.EINVAL)
}

// batchLimit is the largest datagram a route sends in a batch; 0: no limit
// known.
type batchLimit struct{ n atomic.Int32 }

// SetKernelPathMTU gives the Bind the host's view of path MTUs (on Linux,
// pmtu.KernelPathMTU): when the kernel refuses a batch, it says where the
// limit lies. Without it the Bind takes the refused size as the limit. It
// must be called before Open.
func (b *Bind) SetKernelPathMTU(f func(netip.Addr) (int, error)) {
	b.mu.Lock()
	b.pathMTU = f
	b.mu.Unlock()
}

// sendBatch sends bufs to ep on the main socket within lim, splitting a
// batch the kernel refused and learning lim from it. A send is retried
// once: what the kernel refuses after that is an error.
func (b *Bind) sendBatch(bufs [][]byte, ep *conn.StdNetEndpoint, lim *batchLimit) error {
	start, end, err := b.sendWithin(bufs, ep, int(lim.n.Load()))
	if err == nil || end-start < 2 || !refusedBatch(err) {
		return err // sent, or a single datagram refused: nothing to split
	}
	largest := 0
	for _, p := range bufs[start:end] {
		largest = max(largest, len(p))
	}
	l := b.learnLimit(ep.Addr(), largest)
	lim.n.Store(int32(l))
	b.Stats.BatchesSplit.Add(1)
	_, _, err = b.sendWithin(bufs[start:], ep, l)
	return err
}

// sendWithin sends bufs in order: runs of datagrams of at most limit bytes
// as batches, larger ones one per call (limit 0: all as one batch). On
// error it returns the datagrams of the call that failed, bufs[start:end];
// those before were sent (of the failed call, some may have been).
func (b *Bind) sendWithin(bufs [][]byte, ep conn.Endpoint, limit int) (start, end int, err error) {
	if limit == 0 {
		return 0, len(bufs), b.inner.Send(bufs, ep)
	}
	for i, p := range bufs {
		if len(p) <= limit {
			continue
		}
		if start < i {
			if err := b.inner.Send(bufs[start:i], ep); err != nil {
				return start, i, err
			}
		}
		if err := b.inner.Send(bufs[i:i+1], ep); err != nil {
			return i, i + 1, err
		}
		start = i + 1
	}
	if start < len(bufs) {
		return start, len(bufs), b.inner.Send(bufs[start:], ep)
	}
	return len(bufs), len(bufs), nil
}

// learnLimit is the largest UDP payload to addr the kernel takes in a
// batch after it refused datagrams of refused bytes: its path MTU less the
// IP and UDP headers when it says, else just under what it refused.
func (b *Bind) learnLimit(addr netip.Addr, refused int) int {
	b.mu.RLock()
	pathMTU := b.pathMTU
	b.mu.RUnlock()
	if pathMTU != nil {
		if mtu, err := pathMTU(addr); err == nil {
			hdr := ipv4UDPHeaders
			if addr.Is6() && !addr.Is4In6() {
				hdr = ipv6UDPHeaders
			}
			if l := mtu - hdr; l > 0 && l < refused {
				return l
			}
		}
	}
	return refused - 1
}

// IP and UDP headers of a datagram (RFC 791, RFC 8200, RFC 768).
const (
	ipv4UDPHeaders = 20 + 8
	ipv6UDPHeaders = 40 + 8
)
