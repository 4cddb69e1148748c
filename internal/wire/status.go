package wire

import "time"

// State is where a workload is in its lifecycle on a node.
type State string

// The workload states (the agent's supervisor documents the machine).
const (
	StatePending  State = "pending"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
	StateBlocked  State = "blocked"
)

// WorkloadStatus is one workload on one node. It is also the element of the
// agent's local status answer (`atoll node status -o json`).
type WorkloadStatus struct {
	Name     string `json:"name"`
	Runtime  string `json:"runtime"`
	State    State  `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Priority int    `json:"priority"`
	// Reason explains the state; empty when there is nothing to explain.
	Reason string `json:"reason"`
	// Health is "", "healthy", "unhealthy" or "unknown" (no check yet).
	Health string `json:"health,omitempty"`
	// Limits says which resource limits are enforced and how.
	Limits string `json:"limits,omitempty"`
	// StartedAt is when the current instance started; zero when not running.
	StartedAt time.Time `json:"startedAt,omitzero"`
}

// Event is an immutable record of something that happened on a node.
type Event struct {
	// Node is set when the event leaves the node; empty in the node's store.
	Node string `json:"node,omitempty"`
	// Seq orders a node's events; assigned by the node's store.
	Seq uint64 `json:"seq"`
	// ID is unique across nodes and time; it deduplicates delivery.
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Workload string    `json:"workload,omitempty"`
	Type     string    `json:"type"`
	Message  string    `json:"message"`
	// Log holds the last lines of the workload's log for the events that
	// alert (crash-loop, unhealthy), so the cause travels with the alert.
	Log string `json:"log,omitempty"`
}

// Metrics summarises a node's resource use over one window of samples
// (one minute at the default heartbeat): the agent samples once per
// heartbeat, and every gauge holds the worst value it sampled in the
// window (least memory or disk available, most memory used), every counter
// the last. It travels in Status.Metrics, outside the status digest: the
// agent sends a new summary at most once a window and, to keep an idle
// node's bytes small, only as often as its size allows (docs/metrics.md).
type Metrics struct {
	// Start and End are the times of the window's first and last sample.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Samples is how many samples the window holds.
	Samples int         `json:"samples"`
	Node    NodeMetrics `json:"node"`
	// Workloads holds the exec workloads that had a running process in
	// the window, by name. WASM workloads run inside the agent and have no
	// process of their own: they are never here.
	Workloads map[string]WorkloadMetrics `json:"workloads,omitempty"`
}

// NodeMetrics is the node part of a Metrics window.
type NodeMetrics struct {
	// MemTotal and MemAvailable (the window's minimum) are /proc/meminfo's,
	// in bytes.
	MemTotal     int64 `json:"memTotal"`
	MemAvailable int64 `json:"memAvailable"`
	// DiskTotal and DiskAvailable (the window's minimum, space an
	// unprivileged writer may use) are those of the filesystem holding
	// the agent's data directory, in bytes.
	DiskTotal     int64 `json:"diskTotal"`
	DiskAvailable int64 `json:"diskAvailable"`
	// Load1, Load5 and Load15 are the kernel's load averages at the last
	// sample.
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	// Outbox is how many stored events the hub had not acknowledged at the
	// last sample; OutboxCapacity how many the node keeps before it drops
	// the oldest.
	Outbox         int `json:"outbox"`
	OutboxCapacity int `json:"outboxCapacity"`
	// OutboxDropped counts the events the node ever dropped, oldest
	// first, before the hub had them (each drop is also reported by an
	// events-dropped event).
	OutboxDropped uint64 `json:"outboxDropped,omitempty"`
	// Telemetry is set when the node runs a broker: the messages its
	// outbox holds for the hub at the last sample, and how many it ever
	// dropped before the hub had them (docs/telemetry.md).
	Telemetry *TelemetryMetrics `json:"telemetry,omitempty"`
	// Link is the network interface of the default route ("" when the
	// node has none). LinkUp says whether it was up at every sample of
	// the window; LinkChanges is its carrier-change counter (link flaps
	// since boot), which also counts the flaps between samples.
	Link        string `json:"link,omitempty"`
	LinkUp      bool   `json:"linkUp,omitempty"`
	LinkChanges int64  `json:"linkChanges,omitempty"`
}

// WorkloadMetrics is one exec workload's part of a Metrics window. It
// measures the workload's main process (the one the agent started), not
// its children.
type WorkloadMetrics struct {
	// RSS is the largest VmRSS sampled in the window, in bytes.
	RSS int64 `json:"rss"`
	// CPUSeconds is the process's user plus system CPU time at the last
	// sample: a counter that restarts from zero with the process.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// TelemetryMetrics describes a node's telemetry outbox.
type TelemetryMetrics struct {
	Pending uint64 `json:"pending"`
	Dropped uint64 `json:"dropped"`
}
