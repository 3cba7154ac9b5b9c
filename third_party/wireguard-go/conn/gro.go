package conn

import "net/netip"

// meshnode: the receive path of a socket with UDP GRO (third_party/README.md).
//
// With UDP_GRO on, a datagram the kernel reads may be a run of datagrams it
// coalesced, up to 64 KiB. Upstream read such runs into the tail of the
// caller's buffers and split them into the head in place, so it could ask
// for only IdealBatchSize/udpSegmentMaxDatagrams = 2 of them per recvmmsg:
// wherever the kernel does not coalesce (a NIC or veth without GRO, many
// small flows), that is 2 datagrams per system call, and the batch behind
// them (decryption, TUN writes, GRO towards the TUN) as small. groReader
// reads up to groMessages runs into buffers of its own, lends their
// datagrams to the caller in place (packets[i] becomes a slice of the run,
// valid until the next call: see ReceiveFunc), and keeps what does not fit
// for the next call. Lending instead of copying lets the device decrypt
// each datagram straight from the run into its own buffer: one pass over
// the bytes instead of a copy and then a pass (the copy was 4-5 % of a
// receiving node's CPU).
type groReader struct {
	rr   runReader
	runs []groRun // groMessages runs, each with a 64 KiB buffer

	// The runs read and not yet handed out: runs[next:end], of which the
	// first off bytes of runs[next] are out already.
	next, end, off int
	// gso and ep are runs[next]'s segment size (0: a single datagram) and
	// sender, shared by its datagrams; ep is nil until they are known.
	gso int
	ep  *StdNetEndpoint
	// slab holds the endpoints not yet handed out (newEndpoint).
	slab []StdNetEndpoint
}

// endpointSlab is how many endpoints newEndpoint allocates at once. Where
// the kernel coalesces nothing every datagram is a run with an endpoint of
// its own; allocating each one and its source address was two of the
// three allocations per datagram that made the receive path's garbage
// (5-8% of a receiving node's CPU on the packet wire, with the GC behind
// it).
const endpointSlab = 128

// groMessages is how many runs one recvmmsg reads: as many as the caller
// has buffers for when the kernel coalesced nothing, at 64 KiB of address
// space each (pages are touched only as far as a run fills them).
const groMessages = IdealBatchSize

// groMessageSize holds the largest run: a UDP payload of 64 KiB.
const groMessageSize = 1<<16 - 1

// groRun is one message a runReader reads: a run of datagrams, or one.
type groRun struct {
	buf  []byte // groMessageSize bytes
	oob  []byte // room for the control messages: stickyControlSize+gsoControlSize
	n    int    // bytes read into buf
	nn   int    // bytes of control messages read into oob
	from netip.AddrPort
}

// runReader reads up to len(runs) runs into their buffers, waiting for the
// first. Unlike x/net's ReadBatch, which upstream used, it gives each
// run's sender as a netip.AddrPort: x/net made a *net.UDPAddr for every
// message, an allocation a datagram wherever the kernel coalesces nothing
// (mmsg_linux.go).
type runReader interface {
	readRuns(runs []groRun) (int, error)
}

func newGROReader(rr runReader) *groReader {
	r := &groReader{rr: rr, runs: make([]groRun, groMessages)}
	for i := range r.runs {
		r.runs[i].buf = make([]byte, groMessageSize)
		r.runs[i].oob = make([]byte, stickyControlSize+gsoControlSize)
	}
	return r
}

// read is a ReceiveFunc: it hands out the datagrams of the runs already
// read, or reads more when none are left.
func (r *groReader) read(bufs [][]byte, sizes []int, eps []Endpoint) (int, error) {
	if r.next == r.end {
		n, err := r.rr.readRuns(r.runs)
		if err != nil {
			return 0, err
		}
		r.next, r.end, r.off, r.ep = 0, n, 0, nil
	}
	n := 0
	for n < len(bufs) && r.next < r.end {
		run := &r.runs[r.next]
		if r.ep == nil {
			gso, err := getGSOSize(run.oob[:run.nn])
			if err != nil {
				r.next++ // a run whose size can't be read is dropped, as upstream did
				return n, err
			}
			r.gso = gso
			r.ep = r.newEndpoint(run.from)
			getSrcFromControl(run.oob[:run.nn], r.ep)
		}
		size := run.n - r.off
		if r.gso > 0 {
			size = min(size, r.gso)
		}
		bufs[n] = run.buf[r.off : r.off+size : r.off+size]
		sizes[n] = size
		eps[n] = r.ep
		n++
		r.off += size
		if r.off >= run.n {
			r.next, r.off, r.ep = r.next+1, 0, nil
		}
	}
	return n, nil
}

// newEndpoint is a fresh endpoint for ap, with room for its source address
// (stickyControlSize), taken from a slab. Each endpoint handed out is its
// own, as upstream's were: a peer that keeps one may clear its source
// (ClearSrc) without touching another's. A kept endpoint keeps its slab
// alive, endpointSlab endpoints of a few dozen bytes.
func (r *groReader) newEndpoint(ap netip.AddrPort) *StdNetEndpoint {
	if len(r.slab) == 0 {
		r.slab = make([]StdNetEndpoint, endpointSlab)
		src := make([]byte, endpointSlab*stickyControlSize)
		for i := range r.slab {
			at := i * stickyControlSize
			r.slab[i].src = src[at : at : at+stickyControlSize]
		}
	}
	ep := &r.slab[0]
	r.slab = r.slab[1:]
	ep.AddrPort = ap
	return ep
}
