package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/internal/wire"
)

func TestSeriesLabels(t *testing.T) {
	many := make([]string, 150)
	for i := range many {
		many[i] = fmt.Sprintf("n%03d", i)
	}
	for _, tc := range []struct {
		name              string
		names             []string
		max               int
		wantLabels, order []string
	}{
		{"few", []string{"a", "b"}, 3, []string{"a", "b"}, []string{"a", "b"}},
		{"past the bound", []string{"a", "b", "c", "d"}, 2, []string{"a", "b", othersLabel, othersLabel}, []string{"a", "b", othersLabel}},
		{"a repeat", []string{"a", "a", "b"}, 5, []string{"a", othersLabel, "b"}, []string{"a", othersLabel, "b"}},
		{"names other series use", []string{"", othersLabel, "a"}, 5, []string{othersLabel, othersLabel, "a"}, []string{othersLabel, "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			labels, order := seriesLabels(tc.names, tc.max)
			if !slices.Equal(labels, tc.wantLabels) || !slices.Equal(order, tc.order) {
				t.Fatalf("seriesLabels = %q, %q; want %q, %q", labels, order, tc.wantLabels, tc.order)
			}
		})
	}
	_, order := seriesLabels(many, maxPeerSeries)
	if len(order) != maxPeerSeries+1 {
		t.Fatalf("150 peers make %d series, want %d and %s", len(order), maxPeerSeries, othersLabel)
	}
}

// serveMetrics serves the collector's metrics, and the process's, at
// wire.PathMetrics and stops with its context.
func TestServeMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshnode_node_test_value", Help: "a test value"})
	g.Set(7)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := serveMetrics(ctx, &wg, ln, g, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + wire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "meshnode_node_test_value 7") {
		t.Fatalf("GET %s: %d\n%s", wire.PathMetrics, resp.StatusCode, body)
	}
	for _, want := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s lacks %q", wire.PathMetrics, want)
		}
	}
	cancel()
	wg.Wait()
	if _, err := http.Get("http://" + ln.Addr().String() + wire.PathMetrics); err == nil {
		t.Fatal("metrics still served after the node stopped")
	}
}
