package localapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
)

// waitFor bounds every wait on the server: generous for -race on a loaded
// machine, never reached when things work.
const waitFor = 15 * time.Second

// backend is a fake node.
type backend struct {
	status Status
	ping   func(ctx context.Context, peer string) (PingReply, error)
	downs  chan struct{} // one value per Down
	prefs  Prefs
}

func (b *backend) Status() Status { return b.status }

func (b *backend) Ping(ctx context.Context, peer string) (PingReply, error) {
	return b.ping(ctx, peer)
}

func (b *backend) Down() { b.downs <- struct{}{} }

// SetPrefs refuses one exit node, as a node refuses a peer that is none.
func (b *backend) SetPrefs(req PrefsRequest) (Prefs, error) {
	if req.ExitNode != nil && *req.ExitNode == "laptop" {
		return b.prefs, errors.New("not an exit node: laptop serves no approved exit routes")
	}
	if req.ExitNode != nil {
		b.prefs.ExitNode = *req.ExitNode
	}
	if req.AllowLAN != nil {
		b.prefs.AllowLAN = *req.AllowLAN
	}
	return b.prefs, nil
}

// socketPath is a socket path in a directory Listen must create.
func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "run", "meshnode.sock")
}

// serve serves b on a fresh socket until the test ends and returns a
// client of it.
func serve(t *testing.T, b *backend) *Client {
	path := socketPath(t)
	ln, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, b, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v after its context ended, want nil", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Serve did not return in %v after its context ended", waitFor)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return NewClient(path)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func TestStatusRoundTrip(t *testing.T) {
	want := Status{
		Self: Self{
			Name:      "a",
			Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00::1")},
			PublicKey: "key-a",
			Endpoints: []string{"192.0.2.1:41641"},
			Interface: "meshnode0",
			NAT:       NAT{Mapping: "endpoint-independent", PortAlloc: "preserve", Public: "192.0.2.1"},
		},
		Peers: []Peer{{
			Name: "b", Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.2")}, PublicKey: "key-b",
			Online: true, Path: "direct", Endpoint: "192.0.2.2:41641", LatencyMs: 1.5,
			RxBytes: 10, TxBytes: 20, LastHandshake: "2026-01-02T03:04:05Z", Reach: true,
		}},
		Coordinator: Coordinator{URL: "https://coord:8443", Connected: true},
		Counters:    map[string]uint64{"garbage": 3},
		Policy: Policy{
			Active: true, Version: 3, Rules: 1, Flows: 2, MaxFlows: 65536,
			Denied: []RuleDenied{{Rule: "web", In: 4, Out: 1}}, DeniedNoRule: RuleDenied{In: 7},
		},
	}
	c := serve(t, &backend{status: want})
	got, err := c.Status(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status\n %+v\nwant\n %+v", got, want)
	}
}

func TestPing(t *testing.T) {
	reply := PingReply{Peer: "b", Path: "direct", Endpoint: "192.0.2.2:41641", LatencyMs: 0.25}
	tests := []struct {
		name    string
		ping    func(ctx context.Context, peer string) (PingReply, error)
		want    PingReply
		wantErr string
	}{
		{
			name: "answered",
			ping: func(context.Context, string) (PingReply, error) { return reply, nil },
			want: reply,
		},
		{
			name: "refused",
			ping: func(_ context.Context, peer string) (PingReply, error) {
				return PingReply{}, fmt.Errorf("no peer %q", peer)
			},
			wantErr: `no peer "b"`,
		},
		{
			// What the path manager returns when the pong doesn't come.
			name:    "timed out",
			ping:    func(context.Context, string) (PingReply, error) { return PingReply{}, context.DeadlineExceeded },
			wantErr: fmt.Sprintf("timed out after %v", pingTimeout),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, &backend{ping: func(ctx context.Context, peer string) (PingReply, error) {
				if peer != "b" {
					t.Errorf("backend asked to ping %q, want b", peer)
				}
				if d, ok := ctx.Deadline(); !ok || time.Until(d) > pingTimeout {
					t.Errorf("backend's ping is not bounded by %v", pingTimeout)
				}
				return tt.ping(ctx, peer)
			}})
			got, err := c.Ping(ctxFor(t), "b")
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Ping = %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Ping = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestPingClientGivesUp checks that a client that stops waiting ends the
// backend's ping too.
func TestPingClientGivesUp(t *testing.T) {
	ended := make(chan struct{})
	c := serve(t, &backend{ping: func(ctx context.Context, _ string) (PingReply, error) {
		<-ctx.Done()
		close(ended)
		return PingReply{}, ctx.Err()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Ping(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v, want the client's deadline", err)
	}
	select {
	case <-ended:
	case <-time.After(waitFor):
		t.Fatal("the backend's ping went on after the client left")
	}
}

func TestDown(t *testing.T) {
	b := &backend{downs: make(chan struct{}, 1)}
	c := serve(t, b)
	if err := c.Down(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.downs:
	case <-time.After(waitFor):
		t.Fatal("Down did not reach the backend")
	}
}

// Prefs sent through the socket reach the node, only the fields given; a
// refusal comes back as the node said it.
func TestSetPrefs(t *testing.T) {
	b := &backend{prefs: Prefs{AllowLAN: true}}
	c := serve(t, b)
	office := "office"
	p, err := c.SetPrefs(ctxFor(t), PrefsRequest{ExitNode: &office})
	if err != nil || p != (Prefs{ExitNode: "office", AllowLAN: true}) {
		t.Fatalf("SetPrefs = %+v, %v", p, err)
	}
	laptop := "laptop"
	if _, err := c.SetPrefs(ctxFor(t), PrefsRequest{ExitNode: &laptop}); err == nil || !strings.Contains(err.Error(), "laptop serves no approved exit routes") {
		t.Fatalf("SetPrefs(laptop) = %v, want the node's refusal", err)
	}
}

func TestBadRequests(t *testing.T) {
	const wantPeer = `want {"peer": NAME|IP|KEY}`
	tests := []struct {
		name, method, path, body string
		status                   int
		wantErr                  string // the client's error
	}{
		{"ping not JSON", http.MethodPost, PathPing, `{"peer`, http.StatusBadRequest, wantPeer},
		{"ping without a peer", http.MethodPost, PathPing, `{}`, http.StatusBadRequest, wantPeer},
		{"ping too large", http.MethodPost, PathPing, `{"peer":"` + strings.Repeat("b", 2*maxBody) + `"}`, http.StatusBadRequest, wantPeer},
		{"prefs not JSON", http.MethodPost, PathPrefs, `{"exit`, http.StatusBadRequest, `want {"exit_node": NAME, "exit_node_allow_lan_access": BOOL}`},
		{"wrong method", http.MethodGet, PathPing, ``, http.StatusMethodNotAllowed, "node answered HTTP 405: Method Not Allowed"},
		{"unknown path", http.MethodGet, "/v1/nope", ``, http.StatusNotFound, "node answered HTTP 404: 404 page not found"},
	}
	c := serve(t, &backend{ping: func(context.Context, string) (PingReply, error) {
		t.Error("a bad request reached the backend")
		return PingReply{}, nil
	}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctxFor(t), tt.method, "http://meshnode"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("HTTP %d, want %d", resp.StatusCode, tt.status)
			}
			if err := refused(resp); err == nil || err.Error() != tt.wantErr {
				t.Errorf("client error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := c.Ping(ctxFor(t), ""); err == nil || err.Error() != wantPeer {
		t.Errorf("Ping of no peer = %v, want %q", err, wantPeer)
	}
}

func TestClientWithoutNode(t *testing.T) {
	path := socketPath(t)
	_, err := NewClient(path).Status(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "no meshnode running at "+path) {
		t.Fatalf("Status without a node = %v, want advice", err)
	}
}

func TestListenModes(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		testenv.Unavailable(t, "the primary group %s has no name: %v", u.Gid, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		group string
		mode  fs.FileMode
	}{
		{"owner only", "", 0o600},
		{"group " + g.Name, g.Name, 0o660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := socketPath(t)
			ln, err := Listen(path, tt.group)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tt.mode {
				t.Errorf("socket mode %v, want a socket with %v", fi.Mode(), tt.mode)
			}
			if tt.group != "" {
				if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
					t.Errorf("socket group %v, want %d", fi.Sys(), gid)
				}
			}
		})
	}
}

func TestListenUnknownGroup(t *testing.T) {
	path := socketPath(t)
	_, err := Listen(path, "no-such-group-meshnode")
	if err == nil || !strings.Contains(err.Error(), `socket_group "no-such-group-meshnode"`) {
		t.Fatalf("Listen with an unknown group = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left behind after the refusal: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := socketPath(t)
	// A crashed node leaves its socket file behind, with nobody listening.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("no stale socket to replace: %v", err)
	}

	ln, err := Listen(path, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket = %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the new socket does not answer: %v", err)
	}
	c.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := socketPath(t)
	other, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = Listen(path, "")
	if err == nil || !strings.Contains(err.Error(), "is in use: is another meshnode running?") {
		t.Fatalf("Listen over a live socket = %v, want it refused as in use", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the other node's socket was taken away: %v", err)
	}
	c.Close()
}

func TestListenLeavesOtherFiles(t *testing.T) {
	tests := []struct {
		name   string
		create func(path string) error
	}{
		{"regular file", func(path string) error { return os.WriteFile(path, []byte("keep me"), 0o644) }},
		{"directory", func(path string) error { return os.Mkdir(path, 0o755) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meshnode.sock")
			if err := tt.create(path); err != nil {
				t.Fatal(err)
			}
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Listen(path, "")
			if err == nil || !strings.Contains(err.Error(), "is not a socket") {
				t.Fatalf("Listen over a %s = %v, want it refused", tt.name, err)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) || after.Size() != before.Size() {
				t.Fatalf("the %s was replaced or changed: %v", tt.name, err)
			}
		})
	}
}

// TestListenUnderPermissiveUmask: under umask 0 bind makes a socket file
// 0777; the control socket has its own mode whatever the umask, and nothing
// of its private staging directory (internal/unixsock, whose tests check
// that the socket is unreachable until it has that mode) is left beside it.
func TestListenUnderPermissiveUmask(t *testing.T) {
	path := socketPath(t)
	old := syscall.Umask(0)
	ln, err := Listen(path, "")
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != modeOwner {
		t.Fatalf("socket %v, %v; want mode %v", fi.Mode(), err, fs.FileMode(modeOwner))
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Fatalf("socket directory holds %v (%v), want the socket alone", entries, err)
	}
}
