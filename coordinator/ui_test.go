package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/ui"
)

// 'meshnode admin login' gets a one-time link through the admin socket;
// it logs a browser in to the page on ui_listen, which shows the nodes.
func TestAdminLoginLinkOpensThePage(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	if _, err := coordinator.UILoginLink(ctx, cfg); err == nil || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Errorf("link without a coordinator: %v, want an error naming %s", err, cfg.DataDir)
	}
	r := runCoordinator(t, cfg)
	tok, err := openAdmin(t, cfg).CreateToken(ctx, coordinator.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}
	newNode(t, h).join(tok.String(), "a")

	link, err := coordinator.UILoginLink(ctx, cfg)
	if err != nil || !strings.HasPrefix(link, "http://127.0.0.1:") || !strings.Contains(link, "/login?t=") {
		t.Fatalf("link %q, %v", link, err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == ui.CookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login: %s, no session cookie", resp.Status)
	}
	base, _, _ := strings.Cut(link, "/login")
	req, _ := http.NewRequest(http.MethodGet, base+"/api/view", nil)
	req.AddCookie(cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ui.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Nodes) != 1 || v.Nodes[0].Name != "a" {
		t.Fatalf("view %+v, %v; want node a", v, err)
	}
}

func TestAdminLoginWithoutPage(t *testing.T) {
	cfg := testConfig(t)
	cfg.UIListen = ""
	runCoordinator(t, cfg)
	if _, err := coordinator.UILoginLink(context.Background(), cfg); !errors.Is(err, coordinator.ErrNoUI) {
		t.Fatalf("link with ui_listen empty: %v, want ErrNoUI", err)
	}
}
