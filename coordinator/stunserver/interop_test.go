package stunserver

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
)

// Independent STUN clients from Debian's packages check the server against
// someone else's reading of the RFCs: coturn's RFC 5780 clients and the
// stun-client package's classic RFC 3489 client.

// toolTimeout bounds one run of a client; each finishes in about a second
// against a server that answers.
const toolTimeout = time.Minute

// needTool returns the path of command name from Debian package pkg. It
// skips the test without it, except under CI=true, where scripts/deps.sh
// installs the package and a missing one is a failure.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, "needs %s (Debian package %s, installed by scripts/deps.sh) to check the server against an independent client", name, pkg)
	}
	return path
}

// runTool runs an independent client and returns its output.
func runTool(t *testing.T, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	t.Logf("%s %s:\n%s", path, strings.Join(args, " "), out)
	return string(out), err
}

// sameGrid opens the four sockets of an RFC 5780 server with the same two
// ports on 127.0.0.1 and 127.0.0.2, as coturn's client expects: its second
// mapping test goes to OTHER-ADDRESS's IP and the first server's port.
func sameGrid(t *testing.T) Conns {
	t.Helper()
	var g [4]net.PacketConn
	for port := range 2 {
		for try := 0; ; try++ {
			a := listen(t, "127.0.0.1:0")
			b, err := net.ListenPacket("udp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ap(t, a.LocalAddr()).Port()).String())
			if err == nil {
				t.Cleanup(func() { b.Close() })
				g[port], g[otherIP|port] = a, b
				break
			}
			if try == 20 {
				testenv.Unavailable(t, "cannot bind one port on both 127.0.0.1 and 127.0.0.2: %v", err)
			}
		}
	}
	return Conns{Primary: g[0], AltPort: g[otherPort], AltIP: g[otherIP], Alternate: g[otherIP|otherPort]}
}

var (
	responseOrigin = regexp.MustCompile(`Response origin: : (\S+)`)
	otherAddr      = regexp.MustCompile(`Other addr: : (\S+)`)
)

// TestCoturnNATDiscovery runs coturn's RFC 5780 mapping and filtering
// discovery against the server at its primary and at its alternate address.
// On loopback there is no NAT; the first response must come from the
// address asked and name the other IP and port in OTHER-ADDRESS (RFC 5780
// §6.1 Table 1).
func TestCoturnNATDiscovery(t *testing.T) {
	tool := needTool(t, "turnutils_natdiscovery", "coturn")
	conns := sameGrid(t)
	serve(t, conns)
	for _, tc := range []struct{ to, other net.PacketConn }{
		{conns.Primary, conns.Alternate},
		{conns.Alternate, conns.Primary},
	} {
		to, other := ap(t, tc.to.LocalAddr()), ap(t, tc.other.LocalAddr())
		t.Run(to.String(), func(t *testing.T) {
			out, err := runTool(t, tool, "-m", "-f", "-p", strconv.Itoa(int(to.Port())), to.Addr().String())
			if err != nil {
				t.Fatalf("turnutils_natdiscovery: %v", err)
			}
			for _, want := range []string{"NAT with Endpoint Independent Mapping!", "NAT with Endpoint Independent Filtering!"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			_, first, ok := strings.Cut(out, "RFC 5780 response 1")
			if !ok {
				t.Fatal("no response reported")
			}
			first, _, _ = strings.Cut(first, "RFC 5780 response 2")
			if m := responseOrigin.FindStringSubmatch(first); m == nil || m[1] != to.String() {
				t.Errorf("first response's RESPONSE-ORIGIN %v, want %v", m, to)
			}
			if m := otherAddr.FindStringSubmatch(first); m == nil || m[1] != other.String() {
				t.Errorf("first response's OTHER-ADDRESS %v, want %v", m, other)
			}
		})
	}
}

// TestCoturnPaddingRefused: coturn's client pads its requests to 1500 bytes
// (RFC 5780 §7.6) and must get 420, not its padding echoed.
func TestCoturnPaddingRefused(t *testing.T) {
	tool := needTool(t, "turnutils_natdiscovery", "coturn")
	conns := sameGrid(t)
	_, cnt := serve(t, conns)
	p := ap(t, conns.Primary.LocalAddr())
	out, _ := runTool(t, tool, "-m", "-P", "-p", strconv.Itoa(int(p.Port())), p.Addr().String())
	if !strings.Contains(out, "error 420 (Unknown Attribute)") {
		t.Errorf("coturn's client did not report a 420 for PADDING")
	}
	// A result is counted just after its reply is sent: poll.
	eventually(t, func() bool { return cnt.get(ResultUnknownAttribute) > 0 }, "want the padded requests counted as unknown_attribute")
	if n := cnt.get(ResultOK); n != 0 {
		t.Errorf("%d padded requests answered with success", n)
	}
}

// TestClassicClientRefused runs the stun-client package's RFC 3489 client:
// its requests have no magic cookie and are dropped and counted as classic
// (RFC 5389 §12.2: not answered on a port shared with another protocol).
func TestClassicClientRefused(t *testing.T) {
	t.Parallel() // its own server; the client waits out its retransmissions
	tool := needTool(t, "stun", "stun-client")
	primary := listen(t, "127.0.0.1:0")
	_, cnt := serve(t, Conns{Primary: primary})
	out, _ := runTool(t, tool, primary.LocalAddr().String())
	if !strings.Contains(out, "Blocked or could not reach STUN server") {
		t.Errorf("the classic client got an answer")
	}
	eventually(t, func() bool { return cnt.get(ResultClassic) > 0 }, "want the client's requests counted as classic")
	if cnt.get(ResultOK) != 0 || cnt.get(ResultGarbage) != 0 {
		t.Errorf("counted %d ok and %d garbage; want the client's requests counted as classic only", cnt.get(ResultOK), cnt.get(ResultGarbage))
	}
}
