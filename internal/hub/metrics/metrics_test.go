package metrics_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/metrics"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// fakeSource serves fixed nodes, statuses and plans, or err.
type fakeSource struct {
	nodes    []api.Node
	statuses []wire.Status
	plans    []wire.Plan
	err      error
}

func (f fakeSource) Nodes(context.Context) ([]api.Node, error)       { return f.nodes, f.err }
func (f fakeSource) Statuses(context.Context) ([]wire.Status, error) { return f.statuses, nil }
func (f fakeSource) Plans(context.Context) ([]wire.Plan, error)      { return f.plans, nil }

// full is a source for which the collector emits every series it has.
func full() fakeSource {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return fakeSource{
		nodes: []api.Node{{Name: "n1", State: api.NodeConnected, LastSeen: now, PlanRevision: 3, AppliedRevision: 3}},
		statuses: []wire.Status{{Node: "n1", Workloads: []wire.WorkloadStatus{
			{Name: "web", Runtime: "exec", State: wire.StateRunning, Restarts: 1},
		}, Metrics: &wire.Metrics{Start: now.Add(-time.Minute), End: now, Samples: 6,
			Node: wire.NodeMetrics{MemTotal: 10, MemAvailable: 5, DiskTotal: 10, DiskAvailable: 5,
				Load1: 1, Outbox: 1, OutboxCapacity: 10, Link: "eth0", LinkUp: true, LinkChanges: 1,
				Telemetry: &wire.TelemetryMetrics{Pending: 3, Dropped: 1}},
			Workloads: map[string]wire.WorkloadMetrics{"web": {RSS: 1, CPUSeconds: 1}}}}},
		plans: []wire.Plan{{Node: "n1", Revision: 3, Workloads: []wire.PlanWorkload{
			{Workload: manifest.Workload{Metadata: manifest.Metadata{Name: "web"}}},
			{Workload: manifest.Workload{Metadata: manifest.Metadata{Name: "later"}}},
		}}},
	}
}

// emitted gathers the collector over src with a pedantic registry, which
// fails when a collected series does not match its description.
func emitted(t *testing.T, src metrics.Source) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(src))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	return names
}

// allSeries is every series docs/metrics.md and the collector must agree on.
var allSeries = []string{
	"atoll_node_applied_revision", "atoll_node_connected", "atoll_node_disk_available_bytes",
	"atoll_node_disk_total_bytes", "atoll_node_last_seen_seconds", "atoll_node_link_changes_total",
	"atoll_node_link_up", "atoll_node_load1", "atoll_node_load15", "atoll_node_load5",
	"atoll_node_memory_available_bytes", "atoll_node_memory_total_bytes", "atoll_node_metrics_timestamp_seconds",
	"atoll_node_outbox_capacity_events", "atoll_node_outbox_dropped_events_total", "atoll_node_outbox_events",
	"atoll_node_plan_revision", "atoll_node_telemetry_dropped_messages_total", "atoll_node_telemetry_outbox_messages",
	"atoll_workload_cpu_seconds_total", "atoll_workload_memory_bytes", "atoll_workload_restarts_total",
	"atoll_workload_running", "atoll_workload_stopped",
}

func TestCollector_EverySeriesDescribedAndDocumented(t *testing.T) {
	got := emitted(t, full())
	if !slices.Equal(got, allSeries) {
		t.Fatalf("emitted %v,\nwant %v", got, allSeries)
	}
	doc, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range allSeries {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not document `%s`", name)
		}
	}
	documented := regexp.MustCompile("`(atoll_[a-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1)
	for _, m := range documented {
		if !slices.Contains(allSeries, m[1]) {
			t.Errorf("docs/metrics.md documents %s, which the hub does not serve", m[1])
		}
	}
}

func TestCollector_NoSummaryNoResourceSeries(t *testing.T) {
	src := full()
	src.statuses[0].Metrics = nil
	got := emitted(t, src)
	want := []string{"atoll_node_applied_revision", "atoll_node_connected", "atoll_node_last_seen_seconds",
		"atoll_node_plan_revision", "atoll_workload_restarts_total", "atoll_workload_running", "atoll_workload_stopped"}
	if !slices.Equal(got, want) {
		t.Fatalf("without a summary: %v, want %v", got, want)
	}
	// Totals of zero mean "not measured": no memory, disk or outbox series.
	src = full()
	m := *src.statuses[0].Metrics
	m.Node = wire.NodeMetrics{}
	src.statuses[0].Metrics = &m
	for _, name := range emitted(t, src) {
		if strings.Contains(name, "memory_total") || strings.Contains(name, "disk") || strings.Contains(name, "outbox") ||
			strings.Contains(name, "link") || strings.Contains(name, "telemetry") {
			t.Errorf("unmeasured node: %s emitted", name)
		}
	}
}

func TestHandler_StoreErrorFailsTheScrape(t *testing.T) {
	src := full()
	src.err = errors.New("store unreachable")
	srv := httptest.NewServer(metrics.NewHandler(src, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "store unreachable") {
		t.Fatalf("scrape with a failing store = %d %s, want 500 saying why", resp.StatusCode, body)
	}
}

// rulesFile is the part of a Prometheus rules file the test reads.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRules checks docs/alerts.yaml: it is a rules file (strict
// YAML, every rule with an expression and a summary), its expressions
// name only series the hub serves, and the crash-loop and zombie rules
// hold off while a node is offline and until restarts it made offline
// have left their window. PromQL itself is not evaluated here: the
// Prometheus engine is a large dependency; `promtool check rules` does it.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("../../../docs/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("docs/alerts.yaml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("docs/alerts.yaml: no groups")
	}
	series := regexp.MustCompile(`\batoll_[a-z0-9_]+\b`)
	window := regexp.MustCompile(`\[(\d+)m\]`)
	alerts := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %+v: want an alert name, an expression, a severity and a summary", r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for _, name := range series.FindAllString(r.Expr, -1) {
				if !slices.Contains(allSeries, name) {
					t.Errorf("%s uses %s, which the hub does not serve", r.Alert, name)
				}
			}
			alerts[r.Alert] = r.Expr
		}
	}
	for _, name := range []string{"AtollWorkloadCrashLooping", "AtollZombieNode", "AtollNodeDiskNearlyFull", "AtollNodeOutboxFilling"} {
		if _, ok := alerts[name]; !ok {
			t.Errorf("no %s rule; have %v", name, slices.Sorted(maps.Keys(alerts)))
		}
	}
	for _, name := range []string{"AtollWorkloadCrashLooping", "AtollZombieNode"} {
		expr := alerts[name]
		guard := regexp.MustCompile(`min_over_time\(atoll_node_connected\[(\d+)m\]\) == 1`).FindStringSubmatch(expr)
		if guard == nil {
			t.Errorf("%s does not require the node connected over a window:\n%s", name, expr)
			continue
		}
		g, _ := strconv.Atoi(guard[1])
		for _, w := range window.FindAllStringSubmatch(strings.Replace(expr, guard[0], "", 1), -1) {
			if n, _ := strconv.Atoi(w[1]); n >= g {
				t.Errorf("%s: a %dm window is not shorter than its %dm connected guard", name, n, g)
			}
		}
	}
}
