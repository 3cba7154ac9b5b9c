package tcppunch

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/vishvananda/netns"
)

// lab creates namespaces and removes them when the test ends.
type lab struct {
	t      *testing.T
	prefix string
	ip     string
	nft    string
}

// labTools are the commands the lab needs.
type labTools struct{ ip, nft string }

// needLab skips the test, before any subtest starts, unless this host can
// run the lab: root, iproute2, nftables and network namespaces.
func needLab(t *testing.T) labTools {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root: creates network namespaces, veth pairs and nftables NAT rules")
	}
	var tools labTools
	var err error
	if tools.ip, err = exec.LookPath("ip"); err != nil {
		testenv.Unavailable(t, "needs the ip command (iproute2) to create network namespaces")
	}
	if tools.nft, err = exec.LookPath("nft"); err != nil {
		testenv.Unavailable(t, "needs the nft command (nftables) for the NAT routers")
	}
	l := newLab(t, tools)
	probe := l.prefix + "probe"
	if err := l.run("", tools.ip, "netns", "add", probe); err != nil {
		testenv.Unavailable(t, "cannot create a network namespace: %v", err)
	}
	if err := l.run("", tools.ip, "netns", "del", probe); err != nil {
		t.Fatalf("remove network namespace %s: %v", probe, err)
	}
	return tools
}

// newLab starts an empty lab whose namespaces share a fresh name prefix.
func newLab(t *testing.T, tools labTools) *lab {
	return &lab{t: t, ip: tools.ip, nft: tools.nft, prefix: fmt.Sprintf("tp%d%s-", os.Getpid(), strings.ToLower(rand.Text()[:4]))}
}

// run runs a short command, stdin optional.
func (l *lab) run(stdin string, argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs `ip -n NS -batch -`, one command per line.
func (l *lab) ipBatch(ns string, lines ...string) {
	l.t.Helper()
	if err := l.run(strings.Join(lines, "\n")+"\n", l.ip, "-n", ns, "-batch", "-"); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) addNS(name string) string {
	l.t.Helper()
	full := l.prefix + name
	if err := l.run("", l.ip, "netns", "add", full); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := l.run("", l.ip, "netns", "del", full); err != nil {
			l.t.Errorf("remove network namespace: %v", err)
		}
	})
	l.ipBatch(full, "link set lo up")
	return full
}

// inNetns runs fn on a thread inside ns. The goroutine's thread is never
// unlocked, so the runtime discards it instead of reusing a thread that sits
// in the lab's namespace; sockets fn opens stay in ns for good.
func inNetns(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			done <- fmt.Errorf("open network namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// internet creates the public network: a bridge on 198.18.0.0/15.
func (l *lab) internet() string {
	inet := l.addNS("inet")
	l.ipBatch(inet, "link add br0 type bridge", "addr add "+coordAddr.Addr().String()+"/15 dev br0", "link set br0 up")
	return inet
}

// addSite creates a router and a host behind it; it returns both namespaces.
func (l *lab) addSite(inet string, s site) (router, host string) {
	l.t.Helper()
	router, host = l.addNS("r"+s.name), l.addNS("h"+s.name)
	gw, hostIP := s.lan.Addr().Next(), s.lan.Addr().Next().Next()
	bits := strconv.Itoa(s.lan.Bits())
	l.ipBatch(router,
		"link add wan type veth peer name w"+s.name+" netns "+inet,
		"addr add "+s.wan.String()+"/15 dev wan",
		"link set wan up",
		"link add lan type veth peer name eth0 netns "+host,
		"addr add "+gw.String()+"/"+bits+" dev lan",
		"link set lan up")
	l.ipBatch(inet, "link set w"+s.name+" master br0", "link set w"+s.name+" up")
	l.ipBatch(host, "addr add "+hostIP.String()+"/"+bits+" dev eth0", "link set eth0 up", "route add default via "+gw.String())
	if err := inNetns(router, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
	}); err != nil {
		l.t.Fatalf("enable forwarding in %s: %v", router, err)
	}
	if err := l.run(routerRules, l.ip, "netns", "exec", router, l.nft, "-f", "-"); err != nil {
		l.t.Fatal(err)
	}
	return router, host
}

// coordinator serves coordAddr in inet: it tells each client the address it
// sees (the client's public TCP mapping) and holds the connection open.
func (l *lab) coordinator(inet string) {
	var ln net.Listener
	if err := inNetns(inet, func() (err error) {
		ln, err = net.Listen("tcp", coordAddr.String())
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
				io.Copy(io.Discard, c)
			})
		}
	})
	l.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// checkUDPBlocked proves the scenario: UDP from the router itself reaches
// the internet, UDP from the host behind it does not.
func (l *lab) checkUDPBlocked(inet, router, host string) {
	l.t.Helper()
	var rx *net.UDPConn
	if err := inNetns(inet, func() (err error) {
		rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(udpAddr))
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	defer rx.Close()
	for _, probe := range []struct {
		ns     string
		passes bool
	}{{router, true}, {host, false}} {
		if err := inNetns(probe.ns, func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(udpAddr))
			if err != nil {
				return err
			}
			defer c.Close()
			for range udpProbes {
				if _, err := c.Write([]byte(probe.ns)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			l.t.Fatalf("UDP probe from %s: %v", probe.ns, err)
		}
		wait := udpBlockedWait
		if probe.passes {
			wait = udpPassWait
		}
		rx.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 64)
		n, _, err := rx.ReadFromUDPAddrPort(buf)
		switch {
		case probe.passes && err != nil:
			l.t.Fatalf("UDP from %s did not reach the internet: %v", probe.ns, err)
		case !probe.passes && err == nil:
			l.t.Fatalf("UDP from %s (%q) passed its router, which must drop UDP", probe.ns, buf[:n])
		}
		// Drain the rest of a passing probe so it can't be taken for the next.
		for i := 1; probe.passes && i < udpProbes; i++ {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				l.t.Fatalf("UDP probe %d from %s: %v", i, probe.ns, err)
			}
		}
	}
}
