package underlay

import (
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/testenv"
)

// Every way of opening a socket here marks it.
func TestSocketsAreMarked(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "setting SO_MARK needs CAP_NET_ADMIN (root)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	udp, err := ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	dialed, err := DialUDP("udp4", udp.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	tcp, err := (&net.Dialer{Control: Chain()}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	for name, c := range map[string]syscall.Conn{"ListenUDP": udp, "DialUDP": dialed, "Chain": tcp.(*net.TCPConn)} {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mark int
		var gerr error
		raw.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
		if gerr != nil || uint32(mark) != Mark {
			t.Errorf("%s: SO_MARK %#x (%v), want %#x", name, mark, gerr, Mark)
		}
	}
}
