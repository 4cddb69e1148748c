// Package agent wires the node agent together: store, drivers, supervisor and
// local API. It holds no business logic of its own.
package agent

import (
	"log/slog"
	"time"

	"atoll.dev/atoll/internal/agent/identity"
)

// Config is everything the agent needs; zero values take the documented
// defaults.
type Config struct {
	// DataDir holds the store, logs, artifact cache and the local API socket.
	DataDir string
	// Name is the node's name; default: the host name.
	Name string
	// Labels describe the node (site=plant-3).
	Labels map[string]string
	// CapacityMemory in bytes; 0 means what the machine has (MemTotal).
	CapacityMemory int64
	// CapacityMilliCPU in thousandths of a core; 0 means all cores.
	CapacityMilliCPU int64
	// PressureThreshold: when MemAvailable drops below it, the lowest-priority
	// workloads are stopped until it recovers. 0 means the default (5% of
	// MemTotal); negative disables pressure eviction.
	PressureThreshold int64
	// MemInfoPath is read for MemTotal and MemAvailable; default /proc/meminfo.
	// Tests point it at a file they write.
	MemInfoPath string
	// StopGrace is how long a stopping workload gets between SIGTERM and
	// SIGKILL; default 10s.
	StopGrace time.Duration
	// PressureInterval is how often MemAvailable is sampled; default 1s.
	PressureInterval time.Duration
	// LogMaxBytes is the size at which a workload's log is rotated; default
	// 10 MiB, three rotated files kept.
	LogMaxBytes int64
	// EventRetention is how many events the node keeps (its outbox to
	// the hub); beyond it the oldest are dropped, and those the hub had not
	// received are counted and reported. Default store.DefaultEventRetention.
	EventRetention int
	// CgroupParent names the cgroup under which workloads get their own;
	// default "atoll-<name>".
	CgroupParent string
	// DockerHost is the Docker engine that runs container workloads, e.g.
	// unix:///var/run/docker.sock; default $DOCKER_HOST, else that socket.
	// Without an engine answering at start, container workloads are blocked.
	DockerHost string
	// Hub is the hub's NATS URL (nats://host:4222); empty runs the node on
	// its own, with local changes as its whole desired state.
	Hub string
	// Broker, if set, runs the node's local message broker for its
	// workloads on this loopback address (127.0.0.1:4223), and MQTT, if
	// set, beside it (127.0.0.1:1883). Workloads find them in
	// ATOLL_NATS_URL and ATOLL_MQTT_ADDR.
	Broker string
	MQTT   string
	// WorkloadEnv is given to every workload, under its own variables.
	WorkloadEnv map[string]string
	// Identity is the node's certificate and key (a node enrolled with
	// the hub): the link to the hub is TLS with it, renewed before it
	// expires, and the key opens the secrets the plan carries sealed. Nil
	// (a hub run with --insecure, or no hub): no secrets, workloads that
	// reference some are blocked.
	Identity *identity.Identity
	// SecretsDirs are tried in order for the workloads' secret files: the
	// first on tmpfs is used. Default /dev/shm, $XDG_RUNTIME_DIR, /run;
	// without tmpfs, file secrets block their workloads (they are never
	// written to disk).
	SecretsDirs []string
	// OutboxBytes is the disk budget of the messages waiting for the hub;
	// default broker.DefaultMaxBytes.
	OutboxBytes int64
	// ForwardRate bounds what the node forwards to the hub, in bytes of
	// message data a second; default uplink.DefaultForwardRate.
	ForwardRate int
	// ImageCacheBytes is the artifact cache's disk budget (image archives
	// and modules): past it, the oldest artifacts no workload uses are
	// removed. Default DefaultImageCacheBytes.
	ImageCacheBytes int64
	// FetchWindow, if set ("01:00-05:00", local time), is when artifacts
	// over 1 MiB (image archives) are fetched from the hub; outside it they
	// wait, and so does a workload that needs one.
	FetchWindow string
	// Heartbeat overrides the uplink's heartbeat interval (tests, dev).
	Heartbeat time.Duration
	// StopWorkloadsOnExit stops every workload when Run returns, as
	// `atoll dev` wants; a real agent leaves them running for the next one
	// to adopt.
	StopWorkloadsOnExit bool
	// Logger receives the agent's own log; default slog.Default().
	Logger *slog.Logger
}
