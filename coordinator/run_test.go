package coordinator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// running is a coordinator in Run.
type running struct {
	srv    *coordinator.Server
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func runCoordinator(t *testing.T, cfg config.Coordinator) *running {
	t.Helper()
	return runWithRegistry(t, cfg, prometheus.NewRegistry())
}

// runWithRegistry is runCoordinator with reg for its metrics; nil leaves
// the coordinator its default registry.
func runWithRegistry(t *testing.T, cfg config.Coordinator, reg *prometheus.Registry) *running {
	t.Helper()
	opts := coordinator.Options{Config: cfg, Logger: testLogger(t)}
	if reg != nil {
		opts.Registry = reg
	}
	srv, err := coordinator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	sock := filepath.Join(cfg.DataDir, "admin.sock")
	eventually(t, func() bool {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("Run ended early: %v", err)
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	}, "admin socket %s not created", sock)
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := r.srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func openAdmin(t *testing.T, cfg config.Coordinator) coordinator.Admin {
	t.Helper()
	a, err := coordinator.OpenAdmin(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestRunWithAdminSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	r := runCoordinator(t, cfg)
	ctx := context.Background()
	admin := openAdmin(t, cfg)

	tok, err := admin.CreateToken(ctx, coordinator.TokenOptions{Reusable: true, Tags: []string{"lab"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Pin != r.srv.Fingerprint() || !strings.HasPrefix(tok.URL, "https://127.0.0.1:") {
		t.Fatalf("token %s pinned %s; want the served address pinned %s", tok.URL, tok.Pin, r.srv.Fingerprint())
	}
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}
	a := newNode(t, h).join(tok.String(), "a")
	b := newNode(t, h).join(tok.String(), "b")
	sa, sb := a.connect(), b.connect()

	// STUN is served where the welcome says.
	if len(sa.welcome.STUN) != 1 {
		t.Fatalf("welcome STUN %v", sa.welcome.STUN)
	}
	checkSTUN(t, sa.welcome.STUN[0])

	// Removal through the socket reaches the running hub at once.
	removed, err := admin.RemoveNode(ctx, "b")
	if err != nil || removed.PublicKey != b.key() {
		t.Fatalf("RemoveNode = %+v, %v", removed, err)
	}
	delivered(t, "removal via admin socket", func() bool { _, ok := sa.peer(b.key()); return !ok })
	eventually(t, func() bool { return sb.closed() && sb.errorCode() == wire.ErrCodeNodeRemoved }, "b not told node_removed")
	if _, err := admin.RemoveNode(ctx, "b"); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("second RemoveNode = %v, want ErrNotFound", err)
	}
	nodes, err := admin.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "a" || !nodes[0].Online || nodes[0].Tags[0] != "lab" {
		t.Fatalf("Nodes = %+v, %v; want a, online, tagged lab", nodes, err)
	}
	toks, err := admin.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Uses != 2 {
		t.Fatalf("Tokens = %+v, %v", toks, err)
	}
	if err := admin.RevokeToken(ctx, "nope"); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := admin.CreateToken(ctx, coordinator.TokenOptions{Tags: []string{"NO"}}); err == nil {
		t.Fatal("bad tag accepted through the socket")
	}

	// A second coordinator on the same data dir refuses to start.
	other, err := coordinator.New(coordinator.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Run(ctx); err == nil || !strings.Contains(err.Error(), "another coordinator") {
		t.Fatalf("second Run = %v, want 'another coordinator'", err)
	}
	other.Close()

	sa.close()
	r.stop(t)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "admin.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin socket left behind: %v", err)
	}

	// With the coordinator stopped, admin works on the data dir, and tokens
	// carry the URL and pin the coordinator recorded.
	offline := openAdmin(t, cfg)
	tok2, err := offline.CreateToken(ctx, coordinator.TokenOptions{})
	if err != nil || tok2.URL != tok.URL || tok2.Pin != tok.Pin {
		t.Fatalf("offline token %+v, %v; want URL %s pin %s", tok2, err, tok.URL, tok.Pin)
	}
	nodes, err = offline.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "a" {
		t.Fatalf("offline Nodes = %+v, %v", nodes, err)
	}
	if _, err := offline.RemoveNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}

// checkSTUN sends a Binding request to addr and checks the mapped address.
func checkSTUN(t *testing.T, addr string) {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := "127.0.0.1:0"
	if to.IP.To4() == nil {
		local = "[::1]:0"
	}
	c, err := net.ListenPacket("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.WriteTo(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitFor)) //nolint:errcheck // the read reports it
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no STUN answer from %s: %v", addr, err)
	}
	resp := &stun.Message{Raw: buf[:n]}
	var xor stun.XORMappedAddress
	if err := resp.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := xor.GetFrom(resp); err != nil || xor.String() != c.LocalAddr().String() {
		t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want %v", xor, err, c.LocalAddr())
	}
}

func TestOfflineTokenRefusesOtherCertificate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = writeCert(t, t.TempDir())
	cfg.PublicURL = "https://vpn.example.com:8443"
	r := runCoordinator(t, cfg)
	r.stop(t)
	// The admin command forgot --tls-cert: its pin would be wrong.
	bare := cfg
	bare.TLSCert, bare.TLSKey = "", ""
	_, err := openAdmin(t, bare).CreateToken(context.Background(), coordinator.TokenOptions{})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("CreateToken with another certificate = %v; want a refusal naming --tls-cert", err)
	}
	tok, err := openAdmin(t, cfg).CreateToken(context.Background(), coordinator.TokenOptions{})
	if err != nil || tok.Pin != r.srv.Fingerprint() {
		t.Fatalf("CreateToken with the same certificate = %+v, %v", tok, err)
	}
}

// TestRunServesSTUNOverIPv6: with stun_listen_v6 the welcome names the
// IPv6 STUN server and relay, which answer there, and a wildcard
// stun_listen on the same port serves IPv4 beside it.
func TestRunServesSTUNOverIPv6(t *testing.T) {
	t.Parallel()
	free, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	cfg := testConfig(t)
	cfg.STUNListen = fmt.Sprintf(":%d", port)
	cfg.STUNListenV6 = fmt.Sprintf("[::1]:%d", port)
	r := runCoordinator(t, cfg)
	tok, err := openAdmin(t, cfg).CreateToken(context.Background(), coordinator.TokenOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}
	s := newNode(t, h).join(tok.String(), "a").connect()
	w := s.welcome
	v6 := cfg.STUNListenV6
	if !slices.Equal(w.STUN6, []string{v6}) || w.Relay6 != v6 {
		t.Fatalf("welcome STUN6 %v, Relay6 %q; want %s for both", w.STUN6, w.Relay6, v6)
	}
	if len(w.STUN) != 1 || w.Relay != w.STUN[0] {
		t.Fatalf("welcome STUN %v, Relay %q; want the IPv4 server for both", w.STUN, w.Relay)
	}
	checkSTUN(t, v6)
	checkSTUN(t, w.STUN[0])
}

// TestTokenForAnotherURL: a token can carry another way to the running
// coordinator (its IPv6 address, for machines without IPv4), and only an
// https URL.
func TestTokenForAnotherURL(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	runCoordinator(t, cfg)
	admin := openAdmin(t, cfg)
	const v6 = "https://[::1]:8443"
	tok, err := admin.CreateToken(context.Background(), coordinator.TokenOptions{URL: v6})
	if err != nil || tok.URL != v6 {
		t.Fatalf("CreateToken(URL %s) = %+v, %v; want a token for %s", v6, tok, err, v6)
	}
	if _, err := admin.CreateToken(context.Background(), coordinator.TokenOptions{URL: "http://[::1]:8443"}); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("CreateToken(plain http URL) = %v, want a refusal naming https://", err)
	}
}

func TestRunRejectsBadSTUNAlternate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, listen, alternate, want string
	}{
		{"unspecified primary", "0.0.0.0:0", "127.0.0.2:0", "stun_listen"},
		{"same IP", "127.0.0.1:0", "127.0.0.1:0", "same IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.STUNListen, cfg.STUNAlternate = tt.listen, tt.alternate
			srv, err := coordinator.New(coordinator.Options{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.PublicURL = "https://vpn.example.com:8443"
	srv, err := coordinator.New(coordinator.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	pin := srv.Fingerprint()
	srv.Close()
	cert := readCert(t, filepath.Join(cfg.DataDir, "tls.crt"))
	if crypto.CertFingerprint(cert.Raw) != pin {
		t.Fatal("pin is not the certificate's fingerprint")
	}
	if !slices.Contains(cert.DNSNames, "vpn.example.com") || !slices.Contains(cert.DNSNames, "localhost") {
		t.Errorf("DNS names %v", cert.DNSNames)
	}
	if !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
		t.Errorf("IP addresses %v", cert.IPAddresses)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || cert.NotAfter.Sub(cert.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("key %T, validity %v–%v", cert.PublicKey, cert.NotBefore, cert.NotAfter)
	}
	for name, mode := range map[string]os.FileMode{"tls.key": 0o600, "coordinator.key": 0o600, "coordinator.db": 0o600} {
		st, err := os.Stat(filepath.Join(cfg.DataDir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", name, st.Mode().Perm(), err, mode)
		}
	}
	// Reused on restart, even with another public URL: the pin stays.
	cfg.PublicURL = "https://other.example.com:8443"
	again, err := coordinator.New(coordinator.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Fingerprint() != pin {
		t.Fatalf("pin changed on restart")
	}
}

func TestConfiguredCertificate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = writeCert(t, t.TempDir())
	h := start(t, cfg)
	if want := crypto.CertFingerprint(readCert(t, cfg.TLSCert).Raw); h.srv.Fingerprint() != want {
		t.Fatalf("pin %s, want the leaf's %s", h.srv.Fingerprint(), want)
	}
	// The pinned client reaches it.
	newNode(t, h).join(h.token(coordinator.TokenOptions{}), "a")
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "tls.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a self-signed certificate was created although one is configured")
	}

	bad := testConfig(t)
	bad.TLSCert, bad.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	if _, err := coordinator.New(coordinator.Options{Config: bad}); err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Fatalf("New with a missing certificate = %v; want an error naming it", err)
	}
}

func TestDataDirErrorsNamePath(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(file, "data")
	if _, err := coordinator.New(coordinator.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("New = %v; want an error naming %s", err, cfg.DataDir)
	}
	cfg.DataDir = filepath.Join(t.TempDir(), "missing")
	if _, err := coordinator.OpenAdmin(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("OpenAdmin = %v; want an error naming %s", err, cfg.DataDir)
	}
}

// Metrics are served on metrics_listen (loopback), never on the public
// HTTPS port, where anyone who reaches it would learn who is online. The
// default registry adds the process's own: memory, goroutines, CPU.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	r := runWithRegistry(t, cfg, nil)
	tok, err := openAdmin(t, cfg).CreateToken(context.Background(), coordinator.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}
	newNode(t, h).join(tok.String(), "a")

	resp, err := h.client.Get(h.url + wire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public port %s: %s, want 404", wire.PathMetrics, resp.Status)
	}

	addr := coordinator.MetricsAddr(r.srv)
	if addr == nil || !strings.HasPrefix(addr.String(), "127.0.0.1:") {
		t.Fatalf("metrics served on %v, want loopback", addr)
	}
	resp, err = http.Get("http://" + addr.String() + wire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{
		"meshnode_coordinator_nodes 1",
		"meshnode_coordinator_nodes_online 0",
		`meshnode_coordinator_registrations_total{result="ok"} 1`,
		"meshnode_coordinator_rendezvous_total 0",
		"meshnode_coordinator_preauth_connections ",
		"go_goroutines ",
		"go_memstats_heap_inuse_bytes ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMetricsOff(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MetricsListen = ""
	r := runCoordinator(t, cfg)
	if addr := coordinator.MetricsAddr(r.srv); addr != nil {
		t.Fatalf("metrics served on %v with metrics_listen empty", addr)
	}
}

// writeCert writes a self-signed certificate and key, as an operator's own.
func writeCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "operator"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
