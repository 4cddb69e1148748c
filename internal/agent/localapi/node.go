package localapi

import (
	"context"
	"io"
	"path/filepath"
	"time"

	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/manifest"
)

// SocketFile is the socket's file name inside the agent's data directory.
const SocketFile = "agent.sock"

// SocketPath returns where the agent whose data directory is dataDir listens.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketFile) }

// Node is what the local API needs from the agent.
type Node interface {
	// Apply creates or updates workloads. ws has already been normalized
	// (validated and defaulted) by the server.
	Apply(ctx context.Context, ws []manifest.Workload, ch Change) ([]ApplyResult, error)
	// Delete stops and forgets a workload; the error wraps
	// supervisor.ErrWorkloadNotFound when there is no such workload.
	Delete(ctx context.Context, name string, ch Change) error
	// Set overrides environment variables of a workload (unset removes
	// them); errors as for Delete.
	Set(ctx context.Context, name string, env map[string]string, unset []string, ch Change) error
	// Restart stops and starts a workload; errors as for Delete.
	Restart(ctx context.Context, name string) error
	// Status reports every workload, sorted by name.
	Status() []supervisor.Status
	// Events returns the stored events with a sequence number above afterSeq,
	// oldest first.
	Events(afterSeq uint64) ([]store.Event, error)
	// LogPath is the file holding a workload's output; the error wraps
	// supervisor.ErrWorkloadNotFound when there is no such workload.
	LogPath(name string) (string, error)
	// Info describes the node.
	Info() NodeInfo
	// PutArtifact stores the bytes of r in the node's artifact cache under
	// ref ("sha256:<hex>"); the error wraps artifact.ErrDigestMismatch when
	// the bytes do not hash to ref.
	PutArtifact(ref string, r io.Reader) error
}

// Change qualifies a local change. On a node with a hub, local changes are
// overrides settled against the hub's intent (docs/architecture.md); on a
// node without one they are simply the desired state.
type Change struct {
	// Priority of the override; 0 means the default (below the hub's).
	Priority int
}

// SetRequest is the body of POST /v1/workloads/{name}:set.
type SetRequest struct {
	Env      map[string]string `json:"env,omitempty"`
	Unset    []string          `json:"unset,omitempty"`
	Priority int               `json:"priority,omitempty"`
}

// The actions an ApplyResult reports.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// ApplyResult says what Apply did with one workload.
type ApplyResult struct {
	Name string `json:"name"`
	// Action is ActionCreated, ActionConfigured or ActionUnchanged.
	Action string `json:"action"`
}

// NodeInfo describes the node an agent runs on.
type NodeInfo struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// CapacityMemory is the memory workloads may reserve, in bytes.
	CapacityMemory int64 `json:"capacityMemory"`
	// CapacityMilliCPU is the CPU workloads may reserve, in thousandths of a
	// core.
	CapacityMilliCPU int64 `json:"capacityMilliCPU"`
	// Limits says how resource limits are enforced on this node, e.g.
	// "cgroup v1", or why they are not.
	Limits string `json:"limits"`
	// Runtimes lists the runtimes this node can run (exec, wasm, container).
	Runtimes []string `json:"runtimes,omitempty"`
	// UnavailableRuntimes says, by runtime, why one is missing, e.g.
	// "container": "no Docker engine at unix:///var/run/docker.sock: ...".
	UnavailableRuntimes map[string]string `json:"unavailableRuntimes,omitempty"`
	// StoreRecovery is non-empty when the store had to be recovered at start,
	// and says what happened.
	StoreRecovery string `json:"storeRecovery,omitempty"`
	// Version is the agent's build version.
	Version string `json:"version"`
	// Hub is the hub's NATS URL; empty for a node on its own.
	Hub string `json:"hub,omitempty"`
	// HubConnected says whether the link to the hub is up now.
	HubConnected bool `json:"hubConnected,omitempty"`
	// Revoked says the hub revoked the node: it runs on its own.
	Revoked bool `json:"revoked,omitempty"`
	// CertExpires is when the node's certificate expires (zero without
	// one); the agent renews it at two thirds of its life.
	CertExpires time.Time `json:"certExpires,omitzero"`
	// StoredRevision and AppliedRevision are the plan revisions the node
	// has stored and converged to (0 without a hub).
	StoredRevision  uint64 `json:"storedRevision,omitempty"`
	AppliedRevision uint64 `json:"appliedRevision,omitempty"`
	// Broker and MQTT are where workloads reach the node's local broker
	// (empty without one); Outbox is how many of their messages wait for
	// the hub.
	Broker string `json:"broker,omitempty"`
	MQTT   string `json:"mqtt,omitempty"`
	Outbox uint64 `json:"outbox,omitempty"`
}
