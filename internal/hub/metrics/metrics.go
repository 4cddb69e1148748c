// Package metrics serves the hub's view of the fleet in the Prometheus
// exposition format (GET /metrics): every node's link state and plan
// revisions, the resource summary its agent last sent, and every
// workload's state, restarts and resource use per node, read from the
// hub's store at scrape time; plus the hub process's own Go and process
// metrics. Series carry only the labels node and workload. docs/metrics.md
// lists them; docs/alerts.yaml holds alert rules over them.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/wire"
)

// Source is what a scrape reads.
type Source interface {
	// Nodes lists every node the hub knows, with its link state.
	Nodes(ctx context.Context) ([]api.Node, error)
	// Statuses returns the last status every node sent.
	Statuses(ctx context.Context) ([]wire.Status, error)
	// Plans returns every node's plan.
	Plans(ctx context.Context) ([]wire.Plan, error)
}

// NodeLister lists nodes with their link state (control.Controller).
type NodeLister interface {
	Nodes(ctx context.Context) ([]api.Node, error)
}

// StoreSource is the hub's Source: nodes from the controller, which
// merges the fleet's fresh contacts with the stored ones, and statuses and
// plans from the store.
type StoreSource struct {
	NodeLister
	Store *intent.Store
}

// Statuses reads every stored status.
func (s StoreSource) Statuses(ctx context.Context) ([]wire.Status, error) {
	return values(s.Store.Statuses.All(ctx))
}

// Plans reads every stored plan.
func (s StoreSource) Plans(ctx context.Context) ([]wire.Plan, error) {
	return values(s.Store.Plans.All(ctx))
}

func values[T any](es []intent.Entry[T], err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]T, len(es))
	for i, e := range es {
		out[i] = e.Value
	}
	return out, nil
}

// ScrapeTimeout bounds the store reads of one scrape.
const ScrapeTimeout = 10 * time.Second

// NewHandler serves the exposition of src and the hub process's own
// metrics, from a registry of its own. A scrape that cannot read the
// store answers 500, so that Prometheus shows the hub's target down
// rather than a fleet that vanished. log receives those errors; nil
// discards them.
func NewHandler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(src),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{log},
		ErrorHandling: promhttp.HTTPErrorOnError,
		// Each scrape lists three store tables: a few scrapers at once
		// are plenty; more get 503.
		MaxRequestsInFlight: 4,
	})
}

type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Error("metrics scrape", "err", fmt.Sprint(v...)) }

// Collector reads the fleet's series from a Source at every scrape.
type Collector struct {
	src Source
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector over src.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The series. Node series are labelled node; workload series node and
// workload.
var (
	nodeConnected = desc("atoll_node_connected",
		"1 when the hub heard from the node within its timeout (wire.DisconnectedAfter), else 0.", "node")
	nodeLastSeen = desc("atoll_node_last_seen_seconds",
		"Unix time of the hub's last contact with the node; absent for a node never seen.", "node")
	nodePlanRevision = desc("atoll_node_plan_revision",
		"The hub's current plan revision for the node.", "node")
	nodeAppliedRevision = desc("atoll_node_applied_revision",
		"The plan revision the node last reported converged to.", "node")
	nodeMetricsTime = desc("atoll_node_metrics_timestamp_seconds",
		"Unix time of the last sample in the node's latest resource summary.", "node")
	nodeMemTotal = desc("atoll_node_memory_total_bytes",
		"MemTotal of the node.", "node")
	nodeMemAvailable = desc("atoll_node_memory_available_bytes",
		"Lowest MemAvailable sampled in the node's latest summary window.", "node")
	nodeDiskTotal = desc("atoll_node_disk_total_bytes",
		"Size of the filesystem holding the agent's data directory.", "node")
	nodeDiskAvailable = desc("atoll_node_disk_available_bytes",
		"Lowest space available to unprivileged writers on that filesystem in the latest summary window.", "node")
	nodeLoad1 = desc("atoll_node_load1",
		"1-minute load average at the summary's last sample.", "node")
	nodeLoad5 = desc("atoll_node_load5",
		"5-minute load average at the summary's last sample.", "node")
	nodeLoad15 = desc("atoll_node_load15",
		"15-minute load average at the summary's last sample.", "node")
	nodeOutbox = desc("atoll_node_outbox_events",
		"Events stored on the node and not yet acknowledged by the hub, at the summary's last sample.", "node")
	nodeOutboxCapacity = desc("atoll_node_outbox_capacity_events",
		"Events the node keeps before it drops the oldest.", "node")
	nodeOutboxDropped = desc("atoll_node_outbox_dropped_events_total",
		"Events the node dropped, oldest first, before the hub had them.", "node")
	nodeTelemetryPending = desc("atoll_node_telemetry_outbox_messages",
		"Messages the node's broker holds for the hub, at the summary's last sample (nodes with a broker).", "node")
	nodeTelemetryDropped = desc("atoll_node_telemetry_dropped_messages_total",
		"Messages the node's broker dropped, oldest first, before the hub had them (nodes with a broker).", "node")
	nodeLinkUp = desc("atoll_node_link_up",
		"1 when the interface of the node's default route was up at every sample of the summary window.", "node")
	nodeLinkChanges = desc("atoll_node_link_changes_total",
		"Carrier changes (link flaps) of that interface since the node booted.", "node")

	workloadRunning = desc("atoll_workload_running",
		"1 when the node reports the workload running, else 0 (also for a planned workload it has not reported).", "node", "workload")
	workloadStopped = desc("atoll_workload_stopped",
		"1 when the workload ran to completion and its restart policy does not start it again (state stopped), else 0.", "node", "workload")
	workloadRestarts = desc("atoll_workload_restarts_total",
		"Restarts of the workload on the node, as the node reports them.", "node", "workload")
	workloadMemory = desc("atoll_workload_memory_bytes",
		"Largest VmRSS of the workload's process in the node's latest summary window (exec workloads only).", "node", "workload")
	workloadCPU = desc("atoll_workload_cpu_seconds_total",
		"User plus system CPU time of the workload's current process at the summary's last sample (exec workloads only).", "node", "workload")
)

// Descs lists every series the collector can emit.
var descs = []*prometheus.Desc{
	nodeConnected, nodeLastSeen, nodePlanRevision, nodeAppliedRevision, nodeMetricsTime,
	nodeMemTotal, nodeMemAvailable, nodeDiskTotal, nodeDiskAvailable, nodeLoad1, nodeLoad5, nodeLoad15,
	nodeOutbox, nodeOutboxCapacity, nodeOutboxDropped, nodeTelemetryPending, nodeTelemetryDropped, nodeLinkUp, nodeLinkChanges,
	workloadRunning, workloadStopped, workloadRestarts, workloadMemory, workloadCPU,
}

// Describe sends every series' description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// Collect reads the source and sends the fleet's series. A read that
// fails is sent as an invalid metric, which fails the scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	nodes, err := c.src.Nodes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(nodeConnected, fmt.Errorf("list nodes: %w", err))
		return
	}
	statuses, err := c.src.Statuses(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(workloadRunning, fmt.Errorf("list statuses: %w", err))
		return
	}
	plans, err := c.src.Plans(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(workloadRunning, fmt.Errorf("list plans: %w", err))
		return
	}
	byNode := make(map[string]wire.Status, len(statuses))
	for _, st := range statuses {
		byNode[st.Node] = st
	}
	planned := make(map[string]wire.Plan, len(plans))
	for _, p := range plans {
		planned[p.Node] = p
	}
	for _, n := range nodes {
		st := byNode[n.Name]
		collectNode(ch, n, st)
		collectWorkloads(ch, n.Name, planned[n.Name], st)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func collectNode(ch chan<- prometheus.Metric, n api.Node, st wire.Status) {
	node := n.Name
	gauge(ch, nodeConnected, boolean(n.State == api.NodeConnected), node)
	if !n.LastSeen.IsZero() {
		gauge(ch, nodeLastSeen, unix(n.LastSeen), node)
	}
	gauge(ch, nodePlanRevision, float64(n.PlanRevision), node)
	gauge(ch, nodeAppliedRevision, float64(n.AppliedRevision), node)
	m := st.Metrics
	if m == nil {
		return
	}
	gauge(ch, nodeMetricsTime, unix(m.End), node)
	// A total of zero means the agent could not measure it: no series
	// rather than a node with no memory or a full disk.
	if m.Node.MemTotal > 0 {
		gauge(ch, nodeMemTotal, float64(m.Node.MemTotal), node)
		gauge(ch, nodeMemAvailable, float64(m.Node.MemAvailable), node)
	}
	if m.Node.DiskTotal > 0 {
		gauge(ch, nodeDiskTotal, float64(m.Node.DiskTotal), node)
		gauge(ch, nodeDiskAvailable, float64(m.Node.DiskAvailable), node)
	}
	gauge(ch, nodeLoad1, m.Node.Load1, node)
	gauge(ch, nodeLoad5, m.Node.Load5, node)
	gauge(ch, nodeLoad15, m.Node.Load15, node)
	if m.Node.OutboxCapacity > 0 {
		gauge(ch, nodeOutbox, float64(m.Node.Outbox), node)
		gauge(ch, nodeOutboxCapacity, float64(m.Node.OutboxCapacity), node)
		counter(ch, nodeOutboxDropped, float64(m.Node.OutboxDropped), node)
	}
	if t := m.Node.Telemetry; t != nil {
		gauge(ch, nodeTelemetryPending, float64(t.Pending), node)
		counter(ch, nodeTelemetryDropped, float64(t.Dropped), node)
	}
	if m.Node.Link != "" {
		gauge(ch, nodeLinkUp, boolean(m.Node.LinkUp), node)
		counter(ch, nodeLinkChanges, float64(m.Node.LinkChanges), node)
	}
}

// collectWorkloads sends a node's workload series: every workload its
// plan names or its status reports (a local one has no plan entry).
func collectWorkloads(ch chan<- prometheus.Metric, node string, plan wire.Plan, st wire.Status) {
	reported := make(map[string]bool, len(st.Workloads))
	for _, w := range st.Workloads {
		reported[w.Name] = true
		gauge(ch, workloadRunning, boolean(w.State == wire.StateRunning), node, w.Name)
		gauge(ch, workloadStopped, boolean(w.State == wire.StateStopped), node, w.Name)
		counter(ch, workloadRestarts, float64(w.Restarts), node, w.Name)
		if st.Metrics == nil {
			continue
		}
		if u, ok := st.Metrics.Workloads[w.Name]; ok {
			gauge(ch, workloadMemory, float64(u.RSS), node, w.Name)
			counter(ch, workloadCPU, u.CPUSeconds, node, w.Name)
		}
	}
	for _, pw := range plan.Workloads {
		name := pw.Workload.Metadata.Name
		if reported[name] {
			continue
		}
		reported[name] = true
		gauge(ch, workloadRunning, 0, node, name)
		gauge(ch, workloadStopped, 0, node, name)
	}
}
