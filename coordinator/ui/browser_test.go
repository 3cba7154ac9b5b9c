package ui_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/version"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/path"
)

// pathDeadline bounds the browser test's waits for the mesh: a path
// appears within a few report gaps (wire.PathReportGap).
const pathDeadline = 60 * time.Second

// Headless Chromium (Debian's chromium) logs in to a lab coordinator's page
// through a one-time link and sees the mesh: its nodes, and its pairs by
// path kind (a and b direct, c behind a network that blocks UDP relayed
// over TCP), live as c goes away and as a and b fall back to a relay when
// b's network fails. An action without the CSRF token is
// refused; one through the page's own form works, and so does a route's
// approval on its node's page, and a check and a set of the access
// policy through its form. It saves a screenshot
// to $MESHNODE_ARTIFACTS (else the test's temporary directory).
//
// Not parallel: Chromium and the lab take the CPU; the package's other
// tests take about a second.
func TestBrowserShowsTheMesh(t *testing.T) {
	started := browser(t)
	// The page shows what the nodes report: they report paths and find a
	// dead one faster than in production, in the same steps.
	m := meshlab.New(t, meshlab.Options{PathReportGap: wire.PathReportGap / meshSpeed})
	tm := path.DefaultTiming(config.DefaultNode().Keepalive).Scaled(meshSpeed)
	home := natlab.PortRestrictedCone()
	home.Name = "home"
	office := natlab.PortRestrictedCone()
	office.Name = "office"
	blocked := natlab.PortRestrictedCone()
	blocked.Name = "blocked"
	blocked.BlockUDP = true
	a := m.AddNode("a", m.NAT(home).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{Timing: &tm})
	b := m.AddNode("b", m.NAT(office).NewHost("b", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{Timing: &tm, AdvertiseRoutes: []string{officeLAN}})
	c := m.AddNode("c", m.NAT(blocked).NewHost("c", netip.MustParseAddr("10.2.0.2")), meshlab.NodeOptions{Timing: &tm})
	// Pairs are reported once they have talked.
	for _, p := range [][2]*meshlab.Node{{a, b}, {a, c}, {b, c}} {
		talk(t, p[0], p[1])
	}

	bctx := started()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Coord.ServeUI(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	var link string
	wait.For(t, stepTimeout, "the page served", func() bool { link, err = m.Coord.UILoginLink(); return err == nil })

	// step runs one browser action within stepTimeout.
	step := func(what string, act chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := run(bctx, what, act); err != nil {
			t.Fatal(err)
		}
	}
	step("open the login link", chromedp.Steps(chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("main"))))
	// clickLive clicks what sel names from inside the page, in one step:
	// the page redraws a row or panel when the mesh changes, and a click
	// that looks the element up first and clicks it after may find it
	// replaced ("Could not find node with given id").
	clickLive := func(sel string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.WaitVisible(chromedp.CSS(sel)),
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void document.querySelector(%q).click()`, sel)))
	}

	// picture waits until the picture's vertices and edges pass ok.
	picture := func(what string, ok func(nodes, edges []string) bool) {
		t.Helper()
		var nodes, edges []string
		// A wait that fails says what the page showed last.
		defer func() {
			if t.Failed() {
				t.Logf("waiting for %s, the page showed vertices %q and edges %q", what, nodes, edges)
			}
		}()
		wait.For(t, pathDeadline, what, func() bool {
			var err error
			nodes, err = run(bctx, "read the vertices", chromedp.Evaluate[[]string](nodesJS))
			if err != nil {
				t.Fatal(err)
			}
			edges, err = run(bctx, "read the edges", chromedp.Evaluate[[]string](edgesJS))
			if err != nil {
				t.Fatal(err)
			}
			return ok(nodes, edges)
		})
	}
	shows := func(what string, wantNodes, wantEdges []string) {
		t.Helper()
		picture(what, func(nodes, edges []string) bool {
			return slices.Equal(nodes, wantNodes) && slices.Equal(edges, wantEdges)
		})
	}
	shows("the three nodes and their paths",
		[]string{"a online", "b online", "c online"},
		[]string{"a-b direct_udp", "a-c relayed_tcp via coordinator", "b-c relayed_tcp via coordinator"})
	step("let the layout settle", chromedp.Sleep(2*time.Second)) // a picture, not a wait for a condition
	shot, err := run(bctx, "screenshot", chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("MESHNODE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, "ui-topology.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", filepath.Join(dir, "ui-topology.png"))

	status, err := run(bctx, "an action without the CSRF token",
		chromedp.Evaluate[int](`fetch('/api/nodes/a/remove', {method: 'POST'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != 403 {
		t.Errorf("remove without the CSRF token: status %d, %v; want 403", status, err)
	}
	// What a's agent reports running, through the coordinator to its row.
	sw, err := run(bctx, "read a's version and OS", chromedp.Evaluate[string](`(r => r.cells[4].textContent + ' ' + r.cells[5].textContent)(document.querySelector('#nodes tr[data-name="a"]'))`))
	if want := version.Version + " " + runtime.GOOS + "/" + runtime.GOARCH; err != nil || sw != want {
		t.Errorf("a's version and OS in the node table: %q, %v; want %q", sw, err, want)
	}
	// a's NAT, as a measured it: a port-restricted cone.
	wait.For(t, pathDeadline, "a's NAT mapping and filtering in the node table", func() bool {
		nat, err := run(bctx, "read a's NAT", chromedp.Evaluate[string](`(r => r.cells[6].textContent + ', ' + r.cells[7].textContent)(document.querySelector('#nodes tr[data-name="a"]'))`))
		if err != nil {
			t.Fatal(err)
		}
		return nat == "EIM NAT (cone), address-and-port-dependent"
	})
	// The filter: a's overlay address leaves a's row alone in view.
	step("filter the table", chromedp.SendKeys(chromedp.ID("filter"), a.Addr4().String()))
	shown, err := run(bctx, "read the rows shown", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#nodes tbody tr')).filter(r => !r.hidden).map(r => r.dataset.name)`))
	if err != nil || !slices.Equal(shown, []string{"a"}) {
		t.Errorf("rows shown for the filter %s: %v, %v; want a's alone", a.Addr4(), shown, err)
	}
	step("clear the filter", chromedp.Evaluate[chromedp.Void](`void ((f => { f.value = ''; f.dispatchEvent(new Event('input')); })(document.getElementById('filter')))`))
	step("create a token through the page's form", chromedp.Steps(chromedp.Click(chromedp.CSS("#newtoken button")), chromedp.WaitVisible(chromedp.ID("tokenout"))))
	if token, err := run(bctx, "read the token", chromedp.Text(chromedp.ID("newtokentext"))); err != nil || !strings.HasPrefix(token, "mntok") {
		t.Errorf("token created through the page: %q, %v", token, err)
	}

	// b's page: its paths, and the route it advertises, approved there.
	step("open b's page", chromedp.Steps(clickLive(`#nodes tr[data-name="b"] a`),
		chromedp.WaitVisible(chromedp.ID("nodepanel")), chromedp.WaitVisible(chromedp.CSS("#np-routes button"))))
	paths, err := run(bctx, "read b's paths", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#np-paths tbody tr')).map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent).sort()`))
	if err != nil || !slices.Equal(paths, []string{"a direct UDP", "c relayed TCP"}) {
		t.Errorf("b's paths on its page: %q, %v", paths, err)
	}
	step("approve b's route", clickLive("#np-routes button"))
	wait.For(t, stepTimeout, "b's route approved", func() bool {
		routes, err := m.Coord.Routes(context.Background())
		return err == nil && len(routes) == 1 && routes[0].Approved && routes[0].Prefix.String() == officeLAN
	})

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	shows("c offline, without paths", []string{"a online", "b online", "c offline"}, []string{"a-b direct_udp"})

	// b's network starts dropping what b sends: a and b lose their
	// direct path and fall back to a relay.
	b.Host.SetLoss(1)
	start := time.Now()
	var relayed string
	picture("a and b relayed", func(_, edges []string) bool {
		if len(edges) == 1 && strings.HasPrefix(edges[0], "a-b relayed_") {
			relayed = edges[0]
			return true
		}
		return false
	})
	t.Logf("the page showed %q %v after b's network failed", relayed, time.Since(start).Round(time.Second))
	// a's page lists the change among its recent ones.
	step("open a's page", chromedp.Steps(clickLive(`#nodes tr[data-name="a"] a`), chromedp.WaitVisible(chromedp.CSS("#np-changes tbody tr"))))
	changes, err := run(bctx, "read a's path changes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#np-changes tbody tr')).map(r => Array.from(r.cells).slice(1).map(c => c.textContent).join(' '))`))
	if err != nil || !slices.ContainsFunc(changes, func(c string) bool { return strings.HasPrefix(c, "a b direct UDP relayed") }) {
		t.Errorf("a's recent path changes: %q, %v; want a's path to b from direct UDP to relayed", changes, err)
	}
	shot, err = run(bctx, "screenshot of a's page", chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ui-node.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// The access policy: a check lists a mistake by line and column; a
	// set through the form puts version 1 in force.
	step("check a policy with a mistake", chromedp.Steps(
		chromedp.SetValue(chromedp.CSS("#policy textarea"), "rules:\n  - from: \"*\"\n    to: \"*\"\n    proto: tcpp\n"),
		chromedp.Click(chromedp.ID("pol-check")), chromedp.WaitVisible(chromedp.CSS("#pol-result li.error"))))
	if text, err := run(bctx, "read the check", chromedp.Text(chromedp.CSS("#pol-result li.error"))); err != nil || !strings.Contains(text, "policy:4:") {
		t.Errorf("check of a policy with a mistake on line 4: %q, %v", text, err)
	}
	step("set a policy", chromedp.Steps(
		chromedp.SetValue(chromedp.CSS("#policy textarea"), "rules:\n  - from: \"*\"\n    to: \"*\"\n"),
		chromedp.Click(chromedp.ID("pol-set")), chromedp.WaitVisible(chromedp.CSS(`#pol-info[data-version="1"]`))))
	if cur, err := m.Coord.Policy(context.Background(), 0); err != nil || cur.Version != 1 {
		t.Errorf("policy after the page's set: %+v, %v; want version 1", cur, err)
	}
	// Removed through the page (its confirmation answered yes), then
	// version 1 shown again as an older version.
	step("remove the policy", chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](`void (window.confirm = () => true)`),
		chromedp.Click(chromedp.ID("pol-clear")), chromedp.WaitVisible(chromedp.CSS(`#pol-info[data-version="2"]`))))
	if cur, err := m.Coord.Policy(context.Background(), 0); err != nil || cur.Version != 2 || cur.Text != "" {
		t.Errorf("policy after the page's removal: %+v, %v; want version 2, without text", cur, err)
	}
	step("show version 1", chromedp.Steps(
		chromedp.SetValue(chromedp.CSS("#polver input"), "1"),
		chromedp.Click(chromedp.CSS("#polver button")), chromedp.WaitVisible(chromedp.CSS(`#pol-info[data-version="1"]`))))
	if text, err := run(bctx, "read version 1", chromedp.Text(chromedp.ID("pol-text"))); err != nil || !strings.Contains(text, `from: "*"`) {
		t.Errorf("version 1 on the page: %q, %v", text, err)
	}
	// The draft still in the box, tested before it is set.
	step("test the draft", chromedp.Steps(
		chromedp.SendKeys(chromedp.CSS("#poltest input[name=src]"), "a"),
		chromedp.SendKeys(chromedp.CSS("#poltest input[name=dst]"), "b:22/tcp"),
		chromedp.Click(chromedp.CSS("#poltest input[name=draft]")),
		chromedp.Click(chromedp.CSS("#poltest button")),
		chromedp.WaitVisible(chromedp.CSS("#pol-answer:not(:empty)"))))
	if answer, err := run(bctx, "read the answer", chromedp.Text(chromedp.ID("pol-answer"))); err != nil || !strings.HasPrefix(answer, "allow: a -> b") || !strings.Contains(answer, "rule 1") {
		t.Errorf("a to b:22/tcp under the draft: %q, %v; want allowed by rule 1", answer, err)
	}
}

// meshSpeed runs the browser test's path timers and path reports this many
// times faster than production (path.Timing.Scaled,
// meshlab.Options.PathReportGap).
const meshSpeed = 5

// officeLAN is the route b advertises.
const officeLAN = "172.20.0.0/24"

// nodesJS lists the picture's vertices as "NAME online|offline".
const nodesJS = `Array.from(document.querySelectorAll('g.node')).map(n =>
  n.getAttribute('data-name') + ' ' + (n.getAttribute('data-online') === 'true' ? 'online' : 'offline')).sort()`

// edgesJS lists its edges as "A-B KIND[ via RELAY]", names in order.
const edgesJS = `Array.from(document.querySelectorAll('g.edge')).map(e => {
  const d = e.__data__.p;
  return [d.a, d.b].sort().join('-') + ' ' + d.kind + (d.via ? ' via ' + d.via : '');
}).sort()`

// talk opens a TCP connection from a to b over the mesh and exchanges a
// few bytes.
func talk(t *testing.T, a, b *meshlab.Node) {
	t.Helper()
	ln, err := b.Net.ListenTCPAddrPort(netip.AddrPortFrom(b.Addr4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hello")) //nolint:errcheck // the dialer checks what it reads
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), pathDeadline)
	defer cancel()
	conn, err := a.Net.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(b.Addr4(), uint16(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatalf("%s to %s over the mesh: %v", a.Name, b.Name, err)
	}
	defer conn.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("%s from %s: %q, %v", a.Name, b.Name, buf, err)
	}
}
