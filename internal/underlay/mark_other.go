//go:build !linux

package underlay

// SetFD does nothing where sockets have no marks: macOS keeps the node's
// sockets out of the overlay by the routes it installs (tun.Routes).
func SetFD(int) error { return nil }
