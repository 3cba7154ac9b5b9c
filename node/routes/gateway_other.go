//go:build !linux

package routes

import (
	"errors"
	"net/netip"
)

// Gateway serves routes on Linux only (config.Node.Validate refuses
// advertise_routes elsewhere).
type Gateway struct{}

// NewGateway returns a Gateway that serves nothing.
func NewGateway(string, bool) *Gateway { return &Gateway{} }

// Set refuses every route.
func (g *Gateway) Set(serving []netip.Prefix) error {
	if len(serving) == 0 {
		return nil
	}
	return errors.New("serving routes needs Linux: forwarding and masquerading are done with nftables")
}

// Close has nothing to undo.
func (g *Gateway) Close() error { return nil }
