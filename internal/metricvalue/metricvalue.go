// Package metricvalue reads one value from a Prometheus registry, for
// tests that assert what an operator's dashboard would show.
package metricvalue

import "github.com/prometheus/client_golang/prometheus"

// Of is the value of the counter or gauge name with label=value (any
// sample when label is empty); 0 when there is no such sample.
func Of(g prometheus.Gatherer, name, label, value string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			match := label == ""
			for _, l := range s.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			switch {
			case !match:
			case s.GetCounter() != nil:
				return s.GetCounter().GetValue(), nil
			case s.GetGauge() != nil:
				return s.GetGauge().GetValue(), nil
			}
		}
	}
	return 0, nil
}
