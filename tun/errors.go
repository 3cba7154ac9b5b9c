package tun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// Errors returned (wrapped) by this package; test with errors.Is.
var (
	ErrUnknownDriver = errors.New("unknown TUN driver")
	ErrInvalidName   = errors.New("invalid TUN device name")
	ErrInvalidMTU    = errors.New("invalid MTU")
	ErrInvalidConfig = errors.New("invalid TUN configuration")
	// ErrPermission means the process may not create TUN devices.
	ErrPermission = errors.New("not permitted to create a TUN device")
	// ErrNoTUN means the kernel offers no TUN support (no clone device).
	ErrNoTUN = errors.New("TUN support missing")
	// ErrInUse means another process already holds the named device.
	ErrInUse = errors.New("TUN device in use")
)

// createError turns a driver's error into one that says what to do. devPath
// is the clone device whose absence means the kernel lacks TUN support, or ""
// where there is none.
func createError(driver, name string, err error, devPath string) error {
	prefix := fmt.Sprintf("create TUN device %q (driver %s)", name, driver)
	switch {
	case permissionDenied(err):
		return fmt.Errorf("%s: %w: %w; %s", prefix, ErrPermission, err, permissionHint)
	case devPath != "" && !exists(devPath):
		return fmt.Errorf("%s: %w: %s does not exist (%w); load the tun kernel module (modprobe tun) or, in a container, pass the device through (--device %s)",
			prefix, ErrNoTUN, devPath, err, devPath)
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("%s: %w: %w; another process holds it: stop that process or choose another name",
			prefix, ErrInUse, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// permissionDenied reports EPERM or EACCES. water formats some errors with %v
// (losing the errno), so its text is matched as well.
func permissionDenied(err error) bool {
	return errors.Is(err, fs.ErrPermission) ||
		strings.Contains(err.Error(), syscall.EPERM.Error()) ||
		strings.Contains(err.Error(), syscall.EACCES.Error())
}

// exists reports whether path exists. wireguard-go reports a missing clone
// device as plain text, so the path is checked rather than the error.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
