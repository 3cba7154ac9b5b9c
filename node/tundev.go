package node

import (
	"fmt"

	"github.com/meshnode/meshnode/tun"
)

// openTUN creates the overlay's device: the injected one (tests) or a
// kernel TUN with this node's addresses and the overlay's routes.
func (e *Engine) openTUN() error {
	if e.opts.NewTUN != nil {
		dev, err := e.opts.NewTUN(e.state.Self.Addresses, e.cfg.MTU)
		if err != nil {
			return fmt.Errorf("create TUN: %w", err)
		}
		e.tun = dev
		return nil
	}
	dev, err := tun.Create(e.cfg.TUNDriver, e.cfg.Interface, e.cfg.MTU)
	if err != nil {
		return err
	}
	e.tun, e.osTUN = dev, true
	if err := tun.Configure(e.tunConfig()); err != nil {
		dev.Close()
		return err
	}
	return nil
}

func (e *Engine) tunConfig() tun.Config {
	return tun.Config{
		Name:      e.tunName(),
		MTU:       e.cfg.MTU,
		Addresses: e.state.prefixes(),
		Routes:    e.state.routes(),
	}
}

func (e *Engine) tunName() string {
	if e.tun == nil {
		return e.cfg.Interface
	}
	name, err := e.tun.Name()
	if err != nil {
		return e.cfg.Interface
	}
	return name
}

// closeTUN removes the routes and addresses this node added. The device
// itself is closed by wireguard-go's device.Close.
func (e *Engine) closeTUN() {
	if !e.osTUN {
		return
	}
	if err := tun.Deconfigure(e.tunConfig()); err != nil {
		e.log.Warn("removing routes", "err", err)
	}
}
