// Package testenv is how tests say that a real part they need (root,
// network namespaces, a tool from Debian's packages, a loopback address) is
// missing. On a developer's machine the test skips and says what to
// install; under CI=true it fails, because CI installs every part (.ci/run,
// scripts/deps.sh) and a missing one is a broken install step that must not
// pass silently.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t, or fails it under CI=true, saying what is missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true and a real part of this test is missing: %s", msg)
		return
	}
	t.Skip(msg)
}
