package packaging

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/node"
)

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// metricName finds the metric names in a PromQL expression: every metric
// of meshnode's starts with its prefix.
var metricName = regexp.MustCompile(`\bmeshnode_[a-z0-9_]+`)

// descName reads a descriptor's name from its String (client_golang
// exposes no accessor).
var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// recorder is a registry that notes the name of every metric registered.
type recorder struct {
	*prometheus.Registry
	names map[string]bool
}

func (r *recorder) Register(c prometheus.Collector) error {
	describe(c, r.names)
	return r.Registry.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func describe(c prometheus.Collector, names map[string]bool) {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
}

// The Grafana dashboard parses, every panel queries the data source the
// dashboard asks for, and every metric it names is one that the
// coordinator (with its relay) or a node registers; it shows every node
// metric and the coordinator's path summary.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/meshnode.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/meshnode.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without a title, uid or panels: %q %q %d panels", d.Title, d.UID, len(d.Panels))
	}

	coordNames, nodeNames := map[string]bool{}, map[string]bool{}
	cfg := config.DefaultCoordinator()
	cfg.DataDir = t.TempDir()
	srv, err := coordinator.New(coordinator.Options{Config: cfg, Registry: &recorder{Registry: prometheus.NewRegistry(), names: coordNames}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var e *node.Engine // a node's metrics are described without one running
	describe(e.Metrics(), nodeNames)

	used := map[string]bool{}
	exprs := []string{}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want targets on the data source ${datasource}", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, expr := range exprs {
		for _, name := range metricName.FindAllString(expr, -1) {
			used[name] = true
			if !coordNames[name] && !nodeNames[name] {
				t.Errorf("the dashboard queries %s, which neither the coordinator nor a node registers: %s", name, expr)
			}
		}
	}
	want := []string{}
	for name := range nodeNames {
		want = append(want, name)
	}
	for name := range coordNames {
		if strings.Contains(name, "path") || strings.Contains(name, "relayed") {
			want = append(want, name)
		}
	}
	slices.Sort(want)
	for _, name := range want {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
	if len(nodeNames) == 0 || len(coordNames) == 0 {
		t.Fatalf("no metric names read: node %d, coordinator %d", len(nodeNames), len(coordNames))
	}
}
