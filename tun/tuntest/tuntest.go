// Package tuntest has TUN devices for the tests of what wraps one (the
// MTU guard, the packet filter).
package tuntest

import (
	"bytes"
	"os"

	"golang.zx2c4.com/wireguard/tun"
)

// Batch hands every Read its Packets as one batch and records what is
// written.
type Batch struct {
	Packets [][]byte
	Written [][]byte
}

func (d *Batch) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	for i, p := range d.Packets {
		sizes[i] = copy(bufs[i][off:], p)
	}
	return len(d.Packets), nil
}

func (d *Batch) Write(bufs [][]byte, off int) (int, error) {
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
