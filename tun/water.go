package tun

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// waterDevice adapts a water TUN (one packet per read or write, no packet
// information header) to wireguard-go's batched Device interface. On macOS
// water's utun wrapper already strips and adds the 4-byte address-family
// header, so packets here are bare IP on both systems.
type waterDevice struct {
	ifce      *water.Interface
	events    chan wgtun.Event
	closeOnce sync.Once
}

// createWater opens a water TUN and sets its MTU, which water itself leaves
// alone.
func createWater(name string, mtu int) (Device, error) {
	ifce, err := water.New(waterConfig(name))
	if err != nil {
		return nil, err
	}
	if f, ok := ifce.ReadWriteCloser.(*os.File); ok {
		// water opens /dev/net/tun without O_CLOEXEC; a child process (ip,
		// ifconfig) that inherited it would keep the device alive after Close.
		if err := setCloseOnExec(f); err != nil {
			return nil, errors.Join(err, ifce.Close())
		}
	}
	if err := setMTU(ifce.Name(), mtu); err != nil {
		return nil, errors.Join(err, ifce.Close())
	}
	d := &waterDevice{ifce: ifce, events: make(chan wgtun.Event, 1)}
	// water reports no link events. Like wireguard-go's netstack device,
	// announce the device as up once so the engine starts moving packets.
	d.events <- wgtun.EventUp
	return d, nil
}

func setCloseOnExec(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("set close-on-exec on %s: %w", f.Name(), err)
	}
	return sc.Control(func(fd uintptr) { unix.CloseOnExec(int(fd)) })
}

// File returns the TUN descriptor, or nil on macOS where water hides the utun
// socket behind its header wrapper. wireguard-go's device does not use it.
func (d *waterDevice) File() *os.File {
	f, _ := d.ifce.ReadWriteCloser.(*os.File)
	return f
}

// Read reads one packet into bufs[0] at offset.
func (d *waterDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.ifce.Read(bufs[0][offset:])
	if err != nil {
		// On macOS water returns n-4 even on failure, so n is not trusted.
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// Write writes each packet in bufs from offset. A failed packet does not stop
// the rest of the batch, as with wireguard-go's Linux device; it returns the
// number of packets written and every error.
func (d *waterDevice) Write(bufs [][]byte, offset int) (int, error) {
	var (
		written int
		errs    []error
	)
	for _, buf := range bufs {
		if _, err := d.ifce.Write(buf[offset:]); err != nil {
			errs = append(errs, fmt.Errorf("write packet to %s: %w", d.ifce.Name(), err))
			continue
		}
		written++
	}
	return written, errors.Join(errs...)
}

// MTU asks the OS, so a change made outside the process is seen.
func (d *waterDevice) MTU() (int, error) {
	iface, err := net.InterfaceByName(d.ifce.Name())
	if err != nil {
		return 0, fmt.Errorf("read MTU of %s: %w", d.ifce.Name(), err)
	}
	return iface.MTU, nil
}

func (d *waterDevice) Name() (string, error) { return d.ifce.Name(), nil }

func (d *waterDevice) Events() <-chan wgtun.Event { return d.events }

// Close closes the device and its event channel; later calls return nil.
func (d *waterDevice) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.events)
		err = d.ifce.Close()
	})
	return err
}

// BatchSize is 1: water moves one packet per system call.
func (d *waterDevice) BatchSize() int { return 1 }
