package localapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// gzipMagic starts every profile pprof writes (gzipped protocol buffers).
var gzipMagic = []byte{0x1f, 0x8b}

func TestProfile(t *testing.T) {
	c := serve(t, &backend{})
	tests := []struct {
		kind    string
		seconds int
		wantErr string
	}{
		{"cpu", 1, ""},
		{"goroutine", 0, ""},
		{"heap", 0, ""},
		{"cpu", 0, `profile seconds "0": want 1 to 120`},
		{"cpu", 121, `profile seconds "121": want 1 to 120`},
		{"threads", 0, `profile kind "threads": want cpu, heap, allocs, goroutine, mutex or block`},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			var out bytes.Buffer
			err := c.Profile(ctxFor(t), tt.kind, tt.seconds, &out)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Profile(%s, %d) = %v, want %q", tt.kind, tt.seconds, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out.Bytes(), gzipMagic) {
				t.Fatalf("Profile(%s) wrote %d bytes starting %q, want a gzipped profile", tt.kind, out.Len(), out.Bytes()[:min(out.Len(), 8)])
			}
		})
	}
}

// A second CPU profile while one is recorded is refused at once, not
// queued behind it.
func TestProfileOneAtATime(t *testing.T) {
	var p profiler
	p.cpu.Lock()
	defer p.cpu.Unlock()
	w := httptest.NewRecorder()
	p.serve(w, httptest.NewRequest(http.MethodGet, PathProfile+"?kind=cpu&seconds=5", nil))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "already being recorded") {
		t.Fatalf("HTTP %d %q, want 409 saying a profile is being recorded", w.Code, w.Body.String())
	}
}
