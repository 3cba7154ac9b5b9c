package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

func TestDefaultMTUMatchesWireGuard(t *testing.T) {
	// 1500 - 40 (IPv6) - 8 (UDP) - 16 (WireGuard data header) - 16 (Poly1305 tag).
	for _, want := range []int{1420, device.DefaultMTU} {
		if DefaultMTU != want {
			t.Errorf("DefaultMTU = %d, want %d (wireguard-go device.DefaultMTU = %d)", DefaultMTU, want, device.DefaultMTU)
		}
	}
}

// TestCreateRejectsBadInput needs no privileges: validation runs before any
// device is opened.
func TestCreateRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		driver  string
		devName string
		mtu     int
		want    []error
		mention []string
	}{
		{"unknown driver", "tap", DefaultName(), DefaultMTU, []error{ErrUnknownDriver}, []string{`"tap"`, DriverWireGuard, DriverWater}},
		{"empty driver", "", DefaultName(), DefaultMTU, []error{ErrUnknownDriver}, []string{`""`, DriverWireGuard}},
		{"zero MTU", DriverWireGuard, DefaultName(), 0, []error{ErrInvalidMTU}, []string{"MTU 0", "1280", fmt.Sprint(MaxMTU)}},
		{"MTU below IPv6 minimum", DriverWater, DefaultName(), 1279, []error{ErrInvalidMTU}, []string{"1279"}},
		{"MTU above WireGuard maximum", DriverWireGuard, DefaultName(), MaxMTU + 1, []error{ErrInvalidMTU}, []string{fmt.Sprint(MaxMTU + 1)}},
		{"negative MTU", DriverWater, DefaultName(), -1, []error{ErrInvalidMTU}, []string{"-1"}},
		{"empty name", DriverWireGuard, "", DefaultMTU, []error{ErrInvalidName}, []string{`""`}},
		{"name too long", DriverWireGuard, "meshnode-far-too-long0", DefaultMTU, []error{ErrInvalidName}, []string{"meshnode-far-too-long0"}},
		{"every problem at once", "tap", "", 1, []error{ErrUnknownDriver, ErrInvalidName, ErrInvalidMTU}, []string{`"tap"`, "MTU 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := Create(tt.driver, tt.devName, tt.mtu)
			if err == nil {
				dev.Close()
				t.Fatalf("Create(%q, %q, %d) succeeded, want an error", tt.driver, tt.devName, tt.mtu)
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("error %q is not %v", err, want)
				}
			}
			for _, s := range tt.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	good := Config{
		Name:      DefaultName(),
		MTU:       DefaultMTU,
		Addresses: []netip.Prefix{netip.MustParsePrefix("100.88.0.5/16")},
		Routes:    []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16")},
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		mention string
		mtuOnly bool // only Configure checks the MTU
	}{
		{"empty name", func(c *Config) { c.Name = "" }, "device name", false},
		{"bad MTU", func(c *Config) { c.MTU = 9 }, "MTU 9", true},
		{"invalid address", func(c *Config) { c.Addresses = append(c.Addresses, netip.Prefix{}) }, "address invalid Prefix", false},
		{"IPv4-mapped address", func(c *Config) {
			c.Addresses = []netip.Prefix{netip.MustParsePrefix("::ffff:100.88.0.5/112")}
		}, "write 100.88.0.5 as plain IPv4", false},
		{"route with host bits", func(c *Config) {
			c.Routes = []netip.Prefix{netip.MustParsePrefix("100.88.0.5/16")}
		}, "route 100.88.0.5/16 has host bits set: use 100.88.0.0/16", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			err := Configure(cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Configure(%+v) = %v, want %v", cfg, err, ErrInvalidConfig)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Configure error %q does not mention %q", err, tt.mention)
			}
			if tt.mtuOnly {
				return
			}
			if err := Deconfigure(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Deconfigure(%+v) = %v, want %v", cfg, err, ErrInvalidConfig)
			}
		})
	}
}

// TestCreateErrorSaysWhatToDo feeds the mapping the errors the drivers really
// return: bare errnos (wireguard-go), os.SyscallError (water on Linux), plain
// text (water on macOS, wireguard-go's missing clone device).
func TestCreateErrorSaysWhatToDo(t *testing.T) {
	present := filepath.Join(t.TempDir(), "tun")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "tun")
	tests := []struct {
		name    string
		err     error
		devPath string
		want    error
		mention []string
	}{
		{"EPERM", syscall.EPERM, present, ErrPermission, []string{permissionHint, "operation not permitted"}},
		{"EACCES", syscall.EACCES, present, ErrPermission, []string{permissionHint}},
		{"wrapped EPERM", os.NewSyscallError("ioctl", syscall.EPERM), present, ErrPermission, []string{permissionHint}},
		{"EPERM as text", errors.New("error in syscall.RawSyscall(syscall.SYS_CONNECT, ...): operation not permitted"), "", ErrPermission, []string{permissionHint}},
		{"missing clone device", fmt.Errorf(`CreateTUN("mesh0") failed; %s does not exist`, missing), missing, ErrNoTUN, []string{missing, "modprobe tun"}},
		{"busy", syscall.EBUSY, present, ErrInUse, []string{"choose another name"}},
		{"other errors pass through", syscall.EINVAL, present, syscall.EINVAL, []string{"invalid argument"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := createError(DriverWater, "mesh7", tt.err, tt.devPath)
			if !errors.Is(err, tt.want) {
				t.Errorf("createError(%v) = %q, want %v", tt.err, err, tt.want)
			}
			for _, s := range append(tt.mention, `"mesh7"`, DriverWater) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("createError(%v) = %q, does not mention %q", tt.err, err, s)
				}
			}
		})
	}
}
