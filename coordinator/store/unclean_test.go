package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/helperproc"
)

// helperEnv makes the test binary a registering child process; it holds
// the database, as Open takes it.
const helperEnv = "MESHNODE_STORE_HELPER_DB"

// TestHelperRegister is the child of TestUncleanStop: it registers nodes and
// prints "ack KEY" after each commit, until it is killed. It never closes
// the database.
func TestHelperRegister(t *testing.T) {
	t.Parallel()
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestUncleanStopKeepsAcknowledged")
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	const maxNodes = 5000 // bounded; the parent kills the process long before
	for i := range maxNodes {
		k, err := crypto.NewPrivateKey()
		if err != nil {
			os.Exit(1)
		}
		n, err := register(s, "fleet", os.Getenv(helperEnv+"_SECRET"), k.Public(), fmt.Sprintf("n%d", i))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("ack %s %s\n", n.Key, n.IPv4)
	}
	os.Exit(0)
}

// A registration acknowledged before the process was killed (kill -9,
// mid-stream) is there after: nothing is acknowledged before its commit.
func TestUncleanStopKeepsAcknowledged(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, path string) {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
		s.Close()

		cmd, out := helperproc.Start(t, "TestHelperRegister", helperEnv+"="+path, helperEnv+"_SECRET="+secret)
		const killAfter = 40
		acked := map[string]string{}
		sc := bufio.NewScanner(out)
		for len(acked) < killAfter && sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "ack" {
				acked[f[1]] = f[2]
			} else if len(f) > 0 && f[0] == "error" {
				t.Fatalf("helper: %s", sc.Text())
			}
		}
		if len(acked) < killAfter {
			t.Fatalf("helper acknowledged only %d registrations: %v", len(acked), sc.Err())
		}
		// SIGKILL by PID, mid-stream: registrations are still being committed.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// Acks printed before the kill arrived are acknowledged too.
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ack" {
				acked[f[1]] = f[2]
			}
		}
		cmd.Wait() //nolint:errcheck // killed on purpose

		s = openTest(t, path)
		for key, ip := range acked {
			k, err := crypto.ParsePublicKey(key)
			if err != nil {
				t.Fatal(err)
			}
			n, err := s.Node(t.Context(), k)
			if err != nil {
				t.Fatalf("acknowledged node %s lost after kill -9: %v", key, err)
			}
			if n.IPv4.String() != ip {
				t.Fatalf("node %s: address %v after reopen, acknowledged %s", key, n.IPv4, ip)
			}
		}
		t.Logf("%d acknowledged registrations survived SIGKILL", len(acked))
	})
}
