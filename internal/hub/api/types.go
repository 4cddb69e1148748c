// Package api is the hub's HTTP/JSON API contract: the request and answer
// types of every /v1 endpoint, shared by the hub's server and the CLI's
// client. docs/api.md documents the endpoints with examples.
//
// Endpoints (all JSON; errors are ErrorResponse with a 4xx/5xx status and
// change nothing):
//
//	POST   /v1/workloads:apply              []manifest.Workload → []ApplyResult
//	GET    /v1/workloads                    → []Workload
//	GET    /v1/workloads/{name}             → Workload (with Instances)
//	DELETE /v1/workloads/{name}             → 204
//	GET    /v1/nodes                        → []Node
//	GET    /v1/nodes/{name}                 → Node (with Instances and Overrides)
//	GET    /v1/events?node=N&since=RFC3339&limit=L → []wire.Event (oldest first)
//	GET    /v1/telemetry?node=N&subject=S&after=SEQ&limit=L → []TelemetryRecord (oldest first)
//	GET    /v1/nodes/{node}/workloads/{name}/logs?tail=N → text/plain
//	POST   /v1/nodes/{node}/workloads/{name}:restart  CommandRequest → Command (202)
//	GET    /v1/nodes/{node}/commands        → []Command
//	PUT    /v1/artifacts/sha256:<hex>       bytes → 204 (stored once they hash to the reference)
//	POST   /v1/images                       ImagePush → []Image (the archive must be an artifact already)
//	GET    /v1/images                       → []Image (with the nodes that have each)
package api

import (
	"time"

	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/wire"
)

// The actions an ApplyResult reports.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// ApplyResult says what an apply did with one workload.
type ApplyResult struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	// Targets is how many nodes the workload targets now.
	Targets int `json:"targets"`
}

// Node states. A node is never "failed": silence means disconnected.
const (
	NodeConnected    = "connected"
	NodeDisconnected = "disconnected"
	NodeNeverSeen    = "never-seen"
)

// Node is one node as the hub knows it.
type Node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	// State is NodeConnected, NodeDisconnected or NodeNeverSeen.
	State string `json:"state"`
	// LastSeen is the last heartbeat or status; zero if never seen.
	LastSeen time.Time `json:"lastSeen,omitzero"`
	// PlanRevision is the hub's current plan revision for the node;
	// StoredRevision and AppliedRevision are what the node acknowledged.
	PlanRevision     uint64 `json:"planRevision"`
	StoredRevision   uint64 `json:"storedRevision"`
	AppliedRevision  uint64 `json:"appliedRevision"`
	CapacityMemory   int64  `json:"capacityMemory,omitempty"`
	CapacityMilliCPU int64  `json:"capacityMilliCPU,omitempty"`
	Version          string `json:"version,omitempty"`
	// Workloads counts the workloads in the node's plan.
	Workloads int `json:"workloads"`
	// Instances and Overrides are filled by GET /v1/nodes/{name} only.
	Instances []wire.WorkloadStatus `json:"instances,omitempty"`
	Overrides []wire.Override       `json:"overrides,omitempty"`
}

// Workload is one workload as the hub knows it.
type Workload struct {
	Name string `json:"name"`
	// Spec is the stored manifest.
	Manifest any `json:"manifest,omitempty"`
	// Targets is the number of nodes the workload targets; TargetReason
	// explains a zero ("no spec.placement: targets no node").
	Targets      int    `json:"targets"`
	TargetReason string `json:"targetReason,omitempty"`
	// Instances has one entry per targeted node.
	Instances []Instance `json:"instances"`
}

// Instance is a workload on one targeted node.
type Instance struct {
	Node string `json:"node"`
	// NodeState is the node's connection state.
	NodeState string `json:"nodeState"`
	// State is the workload's state as the node last reported it, or
	// "unknown" when the node has not reported it yet.
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Restarts int    `json:"restarts"`
	// Revision is the plan revision the node has applied.
	Revision uint64 `json:"revision"`
}

// CommandRequest queues a one-off command. IdempotencyKey (also accepted as
// the Idempotency-Key header) makes a retried request return the command
// queued the first time instead of queueing another.
type CommandRequest struct {
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// TTL is a Go duration ("30m"); the command expires that long after it
	// was queued. Default "1h".
	TTL string `json:"ttl,omitempty"`
}

// Command is a queued one-off command and its fate.
type Command struct {
	wire.Command
	Node string `json:"node"`
	// State: "queued", "done" or "expired".
	State string `json:"state"`
}

// ErrorResponse is the body of every error answer; Fields lists manifest
// problems, for an invalid apply.
type ErrorResponse = httpjson.ErrorResponse

// FieldError is one problem in one workload of an apply request.
type FieldError = httpjson.FieldError

// TelemetryQuery selects records for GET /v1/telemetry.
type TelemetryQuery struct {
	// Node is empty for every node.
	Node string
	// Subject is a subject or a pattern ("sensors.>"); empty for every
	// subject.
	Subject string
	// After, when set, selects the records stored after that stream
	// sequence (TelemetryRecord.StreamSeq), the first Limit of them; nil
	// selects the latest Limit records.
	After *uint64
	Limit int
}

// TelemetryRecord is one record a node forwarded, as the hub stores it.
type TelemetryRecord struct {
	Node string `json:"node"`
	// Subject is the subject the workload published on.
	Subject string `json:"subject"`
	// Epoch and Seq identify the record in the node's outbox.
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
	// Time is when the node accepted the record.
	Time time.Time `json:"time"`
	// Data is the message as published (base64 in JSON); Text is the same
	// when it is valid UTF-8, absent otherwise (and when Data is empty).
	Data []byte `json:"data"`
	Text string `json:"text,omitempty"`
	// StreamSeq is the record's sequence in the hub's stream: the cursor
	// for after=.
	StreamSeq uint64 `json:"streamSeq"`
}

// ImagePush records an image archive, already stored as an artifact, under
// the image names it holds.
type ImagePush struct {
	// Names are host/name:tag as workloads will write them.
	Names []string `json:"names"`
	// Ref is the archive's artifact reference, "sha256:<hex>".
	Ref string `json:"ref"`
}

// Image is one image name in the hub's image store.
type Image struct {
	Name string `json:"name"`
	// Ref is the archive's artifact reference; Size its bytes.
	Ref    string    `json:"ref"`
	Size   int64     `json:"size"`
	Pushed time.Time `json:"pushed"`
	// Nodes are the nodes whose cache holds the archive, as they last
	// reported, sorted.
	Nodes []string `json:"nodes"`
}
