package tcppunch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// runHelper is a lab node, in its own process inside a host namespace. It
// talks to the test on stdio, one line each:
//
//	→ mapping ADDR:PORT      its public TCP mapping, as the coordinator saw it
//	← ADDR:PORT              the peer's mapping: punch now
//	→ connected ADDR:PORT    the path is up
//	→ frame KEY PAYLOAD      the peer's frame arrived (source key in base64)
//	← end of input           done: close the path and exit
func runHelper() error {
	priv, err := crypto.ParsePrivateKey(os.Getenv(envPriv))
	if err != nil {
		return err
	}
	peer, err := crypto.ParsePublicKey(os.Getenv(envPeer))
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(os.Getenv(envPort), 10, 16)
	if err != nil {
		return fmt.Errorf("%s: %w", envPort, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	// The end of stdin (the test finished or gave up) ends the node.
	first, eof := make(chan string, 1), make(chan struct{})
	go func() {
		in := bufio.NewScanner(os.Stdin)
		if in.Scan() {
			first <- in.Text()
		}
		for in.Scan() {
		}
		close(eof)
		cancel()
	}()

	// As a node runs: the punch port's Listener, then the control
	// connection from the same port, kept open because it holds the NAT's
	// mapping, as the node's stream to the coordinator does.
	l, err := NewListener(ctx, uint16(port))
	if err != nil {
		return err
	}
	defer l.Close()
	ctrl, err := Dialer(l.Port()).DialContext(ctx, "tcp", os.Getenv(envCoord))
	if err != nil {
		return fmt.Errorf("connect to the coordinator: %w", err)
	}
	defer ctrl.Close()
	ctrl.SetReadDeadline(time.Now().Add(helperTimeout))
	mapping, err := bufio.NewReader(ctrl).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the mapping: %w", err)
	}
	fmt.Printf("mapping %s\n", strings.TrimSpace(mapping))

	var line string
	select {
	case line = <-first:
	case <-ctx.Done():
		return errors.New("no peer mapping on stdin")
	}
	remote, err := netip.ParseAddrPort(line)
	if err != nil {
		return err
	}
	got := make(chan []byte, 1)
	p, err := l.Punch(ctx, Options{Priv: priv, Peer: peer, Remote: remote, Log: log, DialAttemptTimeout: labDialAttemptTimeout,
		Deliver: func(f []byte) {
			select {
			case got <- f:
			default:
			}
		}})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Printf("connected %s\n", p.RemoteAddr())
	go p.Run(ctx)
	hello := wire.AppendRelayData(nil, peer, []byte("hello from "+priv.Public().Short()))
	if err := p.SendFrames([][]byte{hello}); err != nil {
		return err
	}
	select {
	case f := <-got:
		rf, err := wire.ParseRelay(f)
		if err != nil {
			return err
		}
		fmt.Printf("frame %s %s\n", rf.Key, rf.Payload)
	case <-ctx.Done():
		return fmt.Errorf("no frame from the peer: %w", ctx.Err())
	}
	// Hold the path until the test has both frames: closing first could
	// end the peer's path before it read ours.
	<-ctx.Done()
	select {
	case <-eof:
		return nil
	default:
		return ctx.Err()
	}
}

// labNode is a node process in a host namespace.
type labNode struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string   // stdout, closed at EOF
	exited  chan struct{} // closed when the process has exited
	waitErr error         // how it exited, set before exited closes
	stderr  *syncBuffer
}

func (l *lab) startNode(host, name string, priv crypto.PrivateKey, peer crypto.PublicKey, port uint16) *labNode {
	l.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	n := &labNode{name: name, lines: make(chan string, 16), exited: make(chan struct{}), stderr: &syncBuffer{}}
	n.cmd = exec.Command(l.ip, "netns", "exec", host, exe, "-test.run=^$")
	n.cmd.Env = append(os.Environ(), helperEnv+"=1", envPriv+"="+priv.String(), envPeer+"="+peer.String(),
		envPort+"="+strconv.Itoa(int(port)), envCoord+"="+coordAddr.String())
	n.cmd.Stderr = n.stderr
	if n.stdin, err = n.cmd.StdinPipe(); err != nil {
		l.t.Fatal(err)
	}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		l.t.Fatalf("start node %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
		close(n.lines)
		n.waitErr = n.cmd.Wait()
		close(n.exited)
	}()
	l.t.Cleanup(func() {
		n.stdin.Close()
		select {
		case <-n.exited:
		case <-time.After(waitTimeout):
			l.t.Errorf("node %s (pid %d) still running after %v; killing it", name, n.cmd.Process.Pid, waitTimeout)
			n.cmd.Process.Kill()
			for range n.lines {
			}
			<-n.exited
		}
		l.t.Logf("node %s log:\n%s", name, n.stderr)
	})
	return n
}

// expect waits for the node's next line, which must start with word, and
// returns the rest.
func (n *labNode) expect(t *testing.T, word string) string {
	t.Helper()
	select {
	case line, ok := <-n.lines:
		if !ok {
			t.Fatalf("node %s ended before %q:\n%s", n.name, word, n.stderr)
		}
		rest, found := strings.CutPrefix(line, word+" ")
		if !found {
			t.Fatalf("node %s said %q, want %q", n.name, line, word)
		}
		return rest
	case <-time.After(helperTimeout):
		t.Fatalf("node %s: no %q after %v:\n%s", n.name, word, helperTimeout, n.stderr)
		return ""
	}
}

func (n *labNode) tell(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(n.stdin, line+"\n"); err != nil {
		t.Fatalf("tell node %s: %v", n.name, err)
	}
}

// finish ends the node and checks that it exited cleanly.
func (n *labNode) finish(t *testing.T) {
	t.Helper()
	n.stdin.Close()
	select {
	case <-n.exited:
		if n.waitErr != nil {
			t.Errorf("node %s: %v:\n%s", n.name, n.waitErr, n.stderr)
		}
	case <-time.After(waitTimeout):
		t.Errorf("node %s did not exit within %v of its end of input", n.name, waitTimeout)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
