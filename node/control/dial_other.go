//go:build !linux

package control

import "syscall"

// userTimeout does nothing off Linux: macOS has no TCP_USER_TIMEOUT, so
// there a message sent to a lost host waits for the next ping's timeout
// rather than the keepalive's deadline.
func userTimeout(string, string, syscall.RawConn) error { return nil }
