package testenv

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// EnterNetns creates a network namespace, removes it when the test ends,
// and moves the calling goroutine's thread into it. The thread stays locked,
// so when the test goroutine exits the runtime discards it instead of reusing
// a thread that sits in a foreign namespace. Sockets, devices and netlink
// requests made from the test goroutine all live in the namespace, so no
// traffic can leave it.
func EnterNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root to create a network namespace")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		Unavailable(t, "needs the ip command (iproute2) to create a network namespace")
	}
	name := fmt.Sprintf("meshtest-%d-%s", os.Getpid(), rand.Text()[:8])
	if out, err := exec.Command(ipPath, "netns", "add", name).CombinedOutput(); err != nil {
		Unavailable(t, "cannot create a network namespace (ip netns add %s): %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipPath, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("remove network namespace %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	runtime.LockOSThread()
	if err := netns.Set(ns); err != nil {
		t.Fatalf("enter network namespace %s: %v", name, err)
	}
}
