package wire

import "fmt"

// MaxSoftwareField bounds each Software field: a version string such as
// "v1.2.3-rc.1-5-gabcdef0-dirty" or "linux/amd64" is well inside it.
const MaxSoftwareField = 64

// Software is what a node runs, reported with its endpoints for the
// administrator's node table: its meshnode version (internal/version) and
// its GOOS/GOARCH. Peers don't need it, so the coordinator keeps it to
// itself.
type Software struct {
	Version string `json:"version,omitempty"`
	OS      string `json:"os,omitempty"`
}

// Check refuses a field a page or a terminal should not show as it is:
// longer than MaxSoftwareField, or holding anything but printable ASCII
// (control characters, escape sequences, invisible Unicode).
func (s Software) Check() error {
	for _, f := range []struct{ name, v string }{{"version", s.Version}, {"os", s.OS}} {
		if len(f.v) > MaxSoftwareField {
			return fmt.Errorf("software %s is %d bytes; at most %d", f.name, len(f.v), MaxSoftwareField)
		}
		for i := 0; i < len(f.v); i++ {
			if c := f.v[i]; c < 0x20 || c > 0x7e {
				return fmt.Errorf("software %s %q: byte %d (%#02x) is not printable ASCII", f.name, f.v, i, c)
			}
		}
	}
	return nil
}
