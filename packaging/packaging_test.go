// Package packaging holds the deb, rpm, systemd and launchd files of
// meshnode. These tests check the static files without root; test.sh builds,
// installs, upgrades and purges the packages as root (make test-packaging).
package packaging

import (
	"bufio"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshnode/meshnode/config"
)

// uncomment turns a config template into the YAML it documents. Commented
// settings are "#key: value" and "#- item" (no space after #); prose
// comments are "# text" or a lone "#". It fails on any line that is neither
// blank nor a comment: the templates must set nothing, so that the built-in
// defaults apply and an upgrade never changes a setting.
func uncomment(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var doc strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "", line == "#", strings.HasPrefix(line, "# "):
		case strings.HasPrefix(line, "#"):
			doc.WriteString(line[1:] + "\n")
		default:
			t.Errorf("%s:%d: %q is not commented out; the template must set nothing", path, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return doc.String()
}

// validator is what config.Node and config.Coordinator have in common.
type validator interface{ Validate() error }

// TestConfigTemplates checks each shipped template against the config
// package that reads it: as shipped it loads to exactly the built-in
// defaults (so upgrades never change a setting); it documents exactly the
// keys the package accepts; its examples, uncommented, load and validate; and
// each key that has a default shows it.
func TestConfigTemplates(t *testing.T) {
	tests := []struct {
		path     string
		defaults func() any // a pointer to a fresh settings struct with its defaults
	}{
		{"config/meshnode.yaml", func() any { n := config.DefaultNode(); return &n }},
		{"config/coordinator.yaml", func() any { c := config.DefaultCoordinator(); return &c }},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			keys := config.Keys(tt.defaults())
			for _, k := range keys {
				t.Setenv(config.EnvName(k), "") // empty is unset for viper: the file alone counts
			}

			shipped := tt.defaults()
			if _, err := config.Load(shipped, tt.path, "", nil); err != nil {
				t.Fatalf("load %s as shipped: %v", tt.path, err)
			}
			if want := tt.defaults(); !reflect.DeepEqual(shipped, want) {
				t.Errorf("%s as shipped loads to\n%+v\nwant the defaults\n%+v", tt.path, shipped, want)
			}

			doc := uncomment(t, tt.path)
			var settings map[string]any
			if err := yaml.Unmarshal([]byte(doc), &settings); err != nil {
				t.Fatalf("%s: the commented settings, uncommented, are not valid YAML: %v", tt.path, err)
			}
			got := slices.Sorted(maps.Keys(settings))
			if want := slices.Sorted(slices.Values(keys)); !slices.Equal(got, want) {
				t.Errorf("%s documents keys %v, want exactly the config keys %v", tt.path, got, want)
			}

			examples := filepath.Join(t.TempDir(), "examples.yaml")
			if err := os.WriteFile(examples, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			loaded := tt.defaults()
			if _, err := config.Load(loaded, examples, "", nil); err != nil {
				t.Fatalf("load the examples of %s: %v", tt.path, err)
			}
			if err := loaded.(validator).Validate(); err != nil {
				t.Errorf("the examples of %s do not validate: %v", tt.path, err)
			}
			// A key with a default shows that default, so the comments
			// can't drift from the code. The templates ship in the Linux
			// packages: other systems have other defaults.
			if runtime.GOOS != "linux" {
				return
			}
			def, ex := reflect.ValueOf(tt.defaults()).Elem(), reflect.ValueOf(loaded).Elem()
			for i := range def.NumField() {
				if d, e := def.Field(i), ex.Field(i); !d.IsZero() && !reflect.DeepEqual(d.Interface(), e.Interface()) {
					t.Errorf("%s shows %s: %v, but the default is %v; show the default",
						tt.path, def.Type().Field(i).Tag.Get("mapstructure"), e.Interface(), d.Interface())
				}
			}
		})
	}
}

// unitSettings reads the [Service]-style "Key=Value" lines of a systemd unit,
// keyed by "Section.Key"; a repeated key keeps every value.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	settings := make(map[string][]string)
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: %q is not Key=Value", path, n+1, line)
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	return settings
}

func TestSystemdUnits(t *testing.T) {
	// What both services rely on: readiness by sd_notify, restart on
	// failure, and hardening they still work under.
	common := map[string]string{
		"Service.Type":                    "notify",
		"Service.Restart":                 "on-failure",
		"Service.RestartSec":              "2",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.RestrictRealtime":        "yes",
		"Service.SystemCallArchitectures": "native",
		"Install.WantedBy":                "multi-user.target",
	}
	tests := []struct {
		path   string
		want   map[string]string
		absent []string
	}{
		{"systemd/meshnode.service", map[string]string{
			"Service.ExecStart":             "/usr/bin/meshnode up --config /etc/meshnode/meshnode.yaml",
			"Service.CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
			"Service.AmbientCapabilities":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
			"Service.StateDirectory":        "meshnode",
			"Service.StateDirectoryMode":    "0700",
			"Service.RuntimeDirectory":      "meshnode",
			"Service.DeviceAllow":           "/dev/net/tun rw",
			"Service.DevicePolicy":          "closed",
		}, []string{"Service.PrivateDevices", "Service.User", "Service.DynamicUser"}},
		{"systemd/meshnode-coordinator.service", map[string]string{
			"Service.ExecStart":             "/usr/bin/meshnode coordinator --config /etc/meshnode/coordinator.yaml",
			"Service.User":                  "meshnode-coordinator",
			"Service.Group":                 "meshnode-coordinator",
			"Service.CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
			"Service.AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
			"Service.StateDirectory":        "meshnode-coordinator",
			"Service.StateDirectoryMode":    "0700",
			"Service.PrivateDevices":        "yes",
		}, []string{"Service.DynamicUser"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := unitSettings(t, tt.path)
			for k, v := range common {
				if _, ok := tt.want[k]; !ok {
					tt.want[k] = v
				}
			}
			for k, want := range tt.want {
				if vals := got[k]; len(vals) != 1 || vals[0] != want {
					t.Errorf("%s: %s = %q, want exactly %q", tt.path, k, vals, want)
				}
			}
			for _, k := range tt.absent {
				if vals, ok := got[k]; ok {
					t.Errorf("%s: %s = %q must not be set", tt.path, k, vals)
				}
			}
		})
	}
}

func TestPkgVersion(t *testing.T) {
	tests := []struct {
		describe, want string
	}{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-rc-1", "1.2.3~rc.1"},
		{"v1.2.3-rc.1-4-gabc1234", "1.2.3~rc.1+4.gabc1234"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3+build.7", "1.2.3+build.7"},
		{"abc1234", "0.0.0~dev+abc1234"},
		{"abc1234-dirty", "0.0.0~dev+abc1234.dirty"},
		{"dev", "0.0.0~dev"},
		{"", "0.0.0~dev"},
		{"v1.2", ""},
		{"release/1.2.3", ""},
		{"v1.2.3 ; rm -rf /", ""},
	}
	for _, tt := range tests {
		t.Run(tt.describe, func(t *testing.T) {
			out, err := exec.Command("sh", "pkgversion.sh", tt.describe).Output()
			got := strings.TrimSpace(string(out))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("pkgversion.sh %q = %q, want an error", tt.describe, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("pkgversion.sh %q: %v", tt.describe, err)
			}
			if got != tt.want {
				t.Errorf("pkgversion.sh %q = %q, want %q", tt.describe, got, tt.want)
			}
		})
	}
}
