// Package helperproc runs one test of the current test binary as a child
// process, for tests that must kill a process mid-work (kill -9 while it
// writes, a crash before its cleanup) and look at what it left.
package helperproc

import (
	"io"
	"os"
	"os/exec"
	"testing"
)

// Start runs the test named test (an exact name) of this binary with env
// added to the environment, and returns the child and its stdout. The
// child is killed and reaped when t ends, if it still runs.
func Start(t testing.TB, test string, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // already dead in the normal path
		cmd.Wait()         //nolint:errcheck // killed on purpose
	})
	return cmd, out
}
