package metricvalue

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestOf(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reports_total"}, []string{"verdict"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "suspended"})
	reg.MustRegister(c, g)
	c.WithLabelValues("stale").Add(2)
	c.WithLabelValues("suspended").Add(5)
	g.Set(3)
	for _, tc := range []struct {
		name, metric, label, value string
		want                       float64
	}{
		{"counter by label", "reports_total", "verdict", "suspended", 5},
		{"another label value", "reports_total", "verdict", "stale", 2},
		{"absent label value", "reports_total", "verdict", "invalid", 0},
		{"gauge without labels", "suspended", "", "", 3},
		{"absent metric", "nothing_total", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Of(reg, tc.metric, tc.label, tc.value)
			if err != nil || got != tc.want {
				t.Fatalf("Of = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
