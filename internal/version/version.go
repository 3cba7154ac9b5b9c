// Package version holds the build's identity, set by the Makefile through
// -ldflags "-X github.com/meshnode/meshnode/internal/version.Version=...".
package version

import "fmt"

// These are variables, not constants, so the linker can set them.
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// String is what `meshnode version` prints.
func String() string {
	return fmt.Sprintf("meshnode %s (commit %s, built %s)", Version, Commit, Date)
}
