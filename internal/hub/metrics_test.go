package hub_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

// scrape GETs /metrics and parses it with Prometheus's own text parser.
func (h *testHub) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	resp, err := http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET /metrics = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		h.t.Fatalf("GET /metrics Content-Type = %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		h.t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// seriesValue finds the sample of family name with exactly labels ("k", "v"
// pairs); ok is false when there is none.
func seriesValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, typ dto.MetricType, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, want) {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), f.GetType(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), f.GetType(), true
		default:
			return m.GetUntyped().GetValue(), f.GetType(), true
		}
	}
	return 0, f.GetType(), false
}

// TestHub_Metrics drives a fake agent that reports a status with a
// resource summary, scrapes /metrics and checks every series against
// what was sent; then the node goes silent past the timeout (fake clock)
// and shows disconnected with its last contact and last summary kept.
func TestHub_Metrics(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", nil, "n1"), exec("db", nil, "n1"), exec("job", nil, "n1"), exec("late", nil, "n1"),
		exec("far", nil, "n2"))

	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	if r := a.Hello(); r.Error != "" {
		t.Fatalf("hello: %s", r.Error)
	}
	if r := a.Sync(); r.Error != "" {
		t.Fatalf("sync: %s", r.Error)
	}
	st := a.Status()
	// The node reports three of its four workloads: web running, db in
	// backoff after crashes, job finished; late is planned, not reported.
	st.Workloads = []wire.WorkloadStatus{
		{Name: "web", Runtime: "exec", State: wire.StateRunning, PID: 100, Restarts: 3},
		{Name: "db", Runtime: "exec", State: wire.StateBackoff, Restarts: 7, Reason: "exited with status 1"},
		{Name: "job", Runtime: "exec", State: wire.StateStopped},
	}
	end := t0.Add(-20 * time.Second)
	st.Metrics = &wire.Metrics{
		Start: end.Add(-50 * time.Second), End: end, Samples: 6,
		Node: wire.NodeMetrics{
			MemTotal: 8 << 30, MemAvailable: 3 << 30, DiskTotal: 100 << 30, DiskAvailable: 7 << 30,
			Load1: 0.5, Load5: 0.25, Load15: 0.125, Outbox: 42, OutboxCapacity: 1000,
			Link: "eth0", LinkUp: true, LinkChanges: 4,
		},
		Workloads: map[string]wire.WorkloadMetrics{"web": {RSS: 12 << 20, CPUSeconds: 3.5}},
	}
	st.Digest = "with-metrics"
	a.SendStatus(st)

	var fams map[string]*dto.MetricFamily
	atolltest.WaitFor(t, 10*time.Second, func() error {
		fams = h.scrape()
		if _, _, ok := seriesValue(fams, "atoll_node_memory_total_bytes", "node", "n1"); !ok {
			return fmt.Errorf("no memory series for n1 yet")
		}
		return nil
	})
	n1 := h.node("n1")
	type want struct {
		name   string
		labels []string
		typ    dto.MetricType
		value  float64
	}
	gauge, counter := dto.MetricType_GAUGE, dto.MetricType_COUNTER
	n := func(node string) []string { return []string{"node", node} }
	w := func(node, workload string) []string { return []string{"node", node, "workload", workload} }
	checks := []want{
		{"atoll_node_connected", n("n1"), gauge, 1},
		{"atoll_node_last_seen_seconds", n("n1"), gauge, float64(t0.Unix())},
		{"atoll_node_plan_revision", n("n1"), gauge, float64(n1.PlanRevision)},
		{"atoll_node_applied_revision", n("n1"), gauge, float64(a.Applied)},
		{"atoll_node_metrics_timestamp_seconds", n("n1"), gauge, float64(end.Unix())},
		{"atoll_node_memory_total_bytes", n("n1"), gauge, 8 << 30},
		{"atoll_node_memory_available_bytes", n("n1"), gauge, 3 << 30},
		{"atoll_node_disk_total_bytes", n("n1"), gauge, 100 << 30},
		{"atoll_node_disk_available_bytes", n("n1"), gauge, 7 << 30},
		{"atoll_node_load1", n("n1"), gauge, 0.5},
		{"atoll_node_load5", n("n1"), gauge, 0.25},
		{"atoll_node_load15", n("n1"), gauge, 0.125},
		{"atoll_node_outbox_events", n("n1"), gauge, 42},
		{"atoll_node_outbox_capacity_events", n("n1"), gauge, 1000},
		{"atoll_node_link_up", n("n1"), gauge, 1},
		{"atoll_node_link_changes_total", n("n1"), counter, 4},
		{"atoll_workload_running", w("n1", "web"), gauge, 1},
		{"atoll_workload_running", w("n1", "db"), gauge, 0},
		{"atoll_workload_running", w("n1", "job"), gauge, 0},
		{"atoll_workload_running", w("n1", "late"), gauge, 0},
		{"atoll_workload_stopped", w("n1", "job"), gauge, 1},
		{"atoll_workload_stopped", w("n1", "db"), gauge, 0},
		{"atoll_workload_restarts_total", w("n1", "web"), counter, 3},
		{"atoll_workload_restarts_total", w("n1", "db"), counter, 7},
		{"atoll_workload_memory_bytes", w("n1", "web"), gauge, 12 << 20},
		{"atoll_workload_cpu_seconds_total", w("n1", "web"), counter, 3.5},
		// n2 is named by a plan and never seen.
		{"atoll_node_connected", n("n2"), gauge, 0},
		{"atoll_node_plan_revision", n("n2"), gauge, 1},
		{"atoll_workload_running", w("n2", "far"), gauge, 0},
	}
	check := func(fams map[string]*dto.MetricFamily, checks []want) {
		t.Helper()
		for _, c := range checks {
			v, typ, ok := seriesValue(fams, c.name, c.labels...)
			if !ok || typ != c.typ || v != c.value {
				t.Errorf("%s%v = %v (%v, found %v), want %v (%v)", c.name, c.labels, v, typ, ok, c.value, c.typ)
			}
		}
	}
	check(fams, checks)
	if n1.PlanRevision == 0 || a.Applied != n1.PlanRevision {
		t.Fatalf("n1 = %+v, fake agent applied %d: want a plan applied", n1, a.Applied)
	}
	absent := []struct {
		name   string
		labels []string
	}{
		{"atoll_node_last_seen_seconds", n("n2")},            // never seen
		{"atoll_node_memory_total_bytes", n("n2")},           // no summary
		{"atoll_workload_restarts_total", w("n1", "late")},   // not reported
		{"atoll_workload_memory_bytes", w("n1", "db")},       // no process in the window
		{"atoll_workload_cpu_seconds_total", w("n1", "job")}, // no process in the window
	}
	for _, x := range absent {
		if v, _, ok := seriesValue(fams, x.name, x.labels...); ok {
			t.Errorf("%s%v = %v, want no such series", x.name, x.labels, v)
		}
	}
	// Only node and workload label the fleet's series; the hub's own
	// metrics are there too.
	for name, f := range fams {
		if !strings.HasPrefix(name, "atoll_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "node" && l.GetName() != "workload" {
					t.Errorf("%s has label %s", name, l.GetName())
				}
			}
		}
	}
	if _, _, ok := seriesValue(fams, "go_goroutines"); !ok {
		t.Errorf("no go_goroutines: families %v", slices.Sorted(maps.Keys(fams)))
	}

	// Silent past the timeout: disconnected, last contact and last
	// summary kept, and nothing about the workloads changes.
	c.Advance(wire.DisconnectedAfter + time.Second)
	fams = h.scrape()
	check(fams, []want{
		{"atoll_node_connected", n("n1"), gauge, 0},
		{"atoll_node_last_seen_seconds", n("n1"), gauge, float64(t0.Unix())},
		{"atoll_node_memory_available_bytes", n("n1"), gauge, 3 << 30},
		{"atoll_workload_running", w("n1", "web"), gauge, 1},
		{"atoll_workload_restarts_total", w("n1", "db"), counter, 7},
	})

	// Only GET.
	if code, body := h.do(http.MethodPost, "/metrics", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d %s, want 405", code, body)
	}
}
