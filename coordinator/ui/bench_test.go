package ui_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshnode/meshnode/coordinator/ui"
	"github.com/meshnode/meshnode/internal/wire"
)

// Size of the simulated mesh: benchNodes nodes, each talking to the next
// benchPeers (benchNodes × benchPeers pairs).
const (
	benchNodes = 500
	benchPeers = 5
)

// simulatedMesh is a view of a mesh of n nodes, each paired with the next
// peers ones, the pairs' kinds mixed.
func simulatedMesh(n, peers int) ui.View {
	kinds := []wire.PathKind{wire.PathDirectUDP, wire.PathDirectTCP, wire.PathRelayedUDP, wire.PathRelayedTCP}
	var v ui.View
	name := func(i int) string { return fmt.Sprintf("n%03d", i%n) }
	for i := range n {
		v.Nodes = append(v.Nodes, wire.Node{
			Name:      name(i),
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{100, 88, byte(i >> 8), byte(i)})},
			Endpoints: []wire.Endpoint{{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 41820), Kind: "stun"}},
			NAT:       &wire.NATInfo{Mapping: wire.MappingEndpointIndependent},
			Online:    i%10 != 0,
			LastSeen:  time.Unix(1_800_000_000, 0),
			Tags:      []string{"site-" + fmt.Sprint(i%7)},
		})
		for j := 1; j <= peers; j++ {
			k := kinds[(i+j)%len(kinds)]
			p := ui.Path{A: name(i), B: name(i + j), Kind: k.String(), RTTMillis: float64(j) * 3.1, Reported: time.Unix(1_800_000_000, 0)}
			if k.Relayed() {
				p.Via, p.Why = "coordinator", wire.WhyHardNATs.String()
			}
			v.Paths = append(v.Paths, p)
		}
	}
	return v
}

// servePage serves the simulated mesh of benchNodes nodes, its event
// streams checking every 10 ms.
func servePage() (*ui.FakeBackend, ui.View, *ui.Server, *httptest.Server) {
	back := &ui.FakeBackend{}
	view := simulatedMesh(benchNodes, benchPeers)
	back.SetView(view)
	srv := ui.New(back, ui.Options{Every: 10 * time.Millisecond})
	return back, view, srv, httptest.NewServer(srv)
}

// untilJS waits in the page, frame by frame, until cond holds.
func untilJS(cond string) chromedp.Action[bool] {
	return chromedp.Evaluate[bool](`new Promise(done => { const f = () => (`+cond+`) ? done(true) : requestAnimationFrame(f); f(); })`, chromedp.EvalAwaitPromise)
}

// The page with a simulated mesh of benchNodes nodes: load-ms is from
// navigation until the table and the picture hold every node and pair;
// update-ms from the backend's change of one path (seen on the event
// stream within Every, here 10 ms) until the picture shows it.
func BenchmarkPage500Nodes(b *testing.B) {
	bctx := browser(b)()
	back, view, srv, hs := servePage()
	defer hs.Close()
	if _, err := run(bctx, "log in", chromedp.Navigate(hs.URL+srv.NewLink())); err != nil {
		b.Fatal(err)
	}
	ready := fmt.Sprintf(`document.querySelectorAll('#nodes tbody tr').length === %d && document.querySelectorAll('g.edge').length === %d`,
		benchNodes, benchNodes*benchPeers)
	var load, update time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := run(bctx, "load", chromedp.Steps(chromedp.Navigate(hs.URL+"/"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := untilJS(ready)(ctx, t)
			return err
		}))); err != nil {
			b.Fatal(err)
		}
		load += time.Since(start)
		kind := []string{"relayed_tcp", "direct_udp"}[i%2]
		view.Paths = slices.Clone(view.Paths)
		view.Paths[0].Kind = kind
		start = time.Now()
		back.SetView(view)
		if _, err := run(bctx, "update", untilJS(`document.querySelector('g.edge[data-pair="n000|n001"]').getAttribute('data-kind') === '`+kind+`'`)); err != nil {
			b.Fatal(err)
		}
		update += time.Since(start)
	}
	b.StopTimer()
	// Leaving the page ends its event stream, which hs.Close waits for.
	if _, err := run(bctx, "leave the page", chromedp.Navigate("about:blank")); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms")
	b.ReportMetric(float64(update.Milliseconds())/float64(b.N), "update-ms")
}

// Eight pages open on a simulated mesh of benchNodes nodes: each op is one
// change of the view, delivered to every page's event stream; cpu-ms is
// the process's CPU time per change (getrusage), most of it building and
// encoding the view.
func BenchmarkEightPagesOpen(b *testing.B) {
	const pages = 8
	back, view, srv, hs := servePage()
	defer hs.Close()
	var streams []*bufio.Reader
	for range pages {
		cookie := login(b, hs.URL+srv.NewLink())
		req, _ := http.NewRequest("GET", hs.URL+"/api/events", nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		streams = append(streams, bufio.NewReaderSize(resp.Body, 1<<20))
	}
	// await reads a stream's events until one shows the first pair as kind.
	await := func(r *bufio.Reader, kind string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, `{"a":"n000","b":"n001","kind":"`+kind+`"`) {
				return
			}
		}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	b.ResetTimer()
	for i := range b.N {
		kind := []string{"relayed_tcp", "direct_udp"}[i%2]
		view.Paths = slices.Clone(view.Paths)
		view.Paths[0].Kind = kind
		back.SetView(view)
		for _, r := range streams {
			await(r, kind)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpu()-before).Milliseconds())/float64(b.N), "cpu-ms")
}

// login follows a one-time link and returns the session cookie. (A
// cookie jar would keep it to itself: it is Secure, and the test server
// is plain HTTP.)
func login(b *testing.B, link string) *http.Cookie {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(link)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == ui.CookieName {
			return ck
		}
	}
	b.Fatalf("login: status %d, no session cookie", resp.StatusCode)
	return nil
}
