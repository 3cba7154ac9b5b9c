// Package tuntest has TUN devices for the tests of what wraps one (the
// MTU guard, the packet filter).
package tuntest

import (
	"bytes"
	"os"
	"slices"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// Batch hands every Read its Packets as one batch and records what is
// written. Writes may come from another goroutine than the test's (the MTU
// guard writes its errors from its own): read them then with Writes.
type Batch struct {
	Packets [][]byte
	mu      sync.Mutex
	Written [][]byte
}

// Writes returns what was written so far.
func (d *Batch) Writes() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.Written)
}

func (d *Batch) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	for i, p := range d.Packets {
		sizes[i] = copy(bufs[i][off:], p)
	}
	return len(d.Packets), nil
}

func (d *Batch) Write(bufs [][]byte, off int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range bufs {
		d.Written = append(d.Written, bytes.Clone(b[off:]))
	}
	return len(bufs), nil
}

func (d *Batch) File() *os.File           { return nil }
func (d *Batch) MTU() (int, error)        { return 1420, nil }
func (d *Batch) Name() (string, error)    { return "fake0", nil }
func (d *Batch) Events() <-chan tun.Event { return nil }
func (d *Batch) Close() error             { return nil }
func (d *Batch) BatchSize() int           { return 128 }

// Discard is a Batch whose writes keep nothing (for allocation counts and
// benchmarks).
type Discard struct{ Batch }

func (*Discard) Write(bufs [][]byte, _ int) (int, error) { return len(bufs), nil }
