package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration reference must list every key with its
// default, so a newcomer's page stays true when settings change.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	node, coord := DefaultNode(), DefaultCoordinator()
	// Each program's keys are in its own table: both have metrics_listen.
	nodeTable, coordTable := section(readme, "### Node ("), section(readme, "### Coordinator (")
	for _, tc := range []struct {
		settings any
		readme   string
	}{{&node, nodeTable}, {&coord, coordTable}} {
		settings, readme := tc.settings, tc.readme
		for _, d := range Describe(settings) {
			row := rowOf(readme, d.Key)
			if row == "" {
				t.Errorf("README has no table row for key %s", d.Key)
				continue
			}
			if d.Value != "" && d.Value != "[]" && d.Value != "false" && !strings.Contains(row, d.Value) && !isOSDependent(d.Key) {
				t.Errorf("README row for %s does not show the default %q: %s", d.Key, d.Value, row)
			}
		}
	}
}

// section is the README from the heading that starts with heading to the
// next heading.
func section(readme, heading string) string {
	_, rest, _ := strings.Cut(readme, "\n"+heading)
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// rowOf finds the table row that documents key.
func rowOf(readme, key string) string {
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "| `"+key+"` |") {
			return line
		}
	}
	return ""
}

// isOSDependent keys have per-OS defaults that the README spells out.
func isOSDependent(key string) bool {
	return key == "interface" || key == "socket" || key == "state_dir"
}
