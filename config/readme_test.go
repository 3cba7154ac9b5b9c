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
	for _, settings := range []any{&node, &coord} {
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
