// Package wire is the protocol between the hub and its agents: the messages
// they exchange over NATS and the subjects they use. Everything here is
// JSON on the wire; a field's doc says what its absence means.
//
// # The sync loop
//
// The agent drives; the hub answers. On (re)connect the agent sends Hello,
// then every HeartbeatInterval a Heartbeat request. The reply says the
// node's current plan revision, whether the hub wants a full Status, and the
// one-off commands queued for the node. When the plan revision is newer than
// the one the agent stored, the agent fetches the plan (PlanRequest),
// stores it, and only then reports it as stored (Heartbeat.StoredRevision);
// once its supervisor has converged to it, as applied (AppliedRevision).
// The hub pushes a Notify on a change so connected agents do not wait for
// the next heartbeat. Every message is idempotent: replaying any of them
// changes nothing, because revisions only grow and commands carry ids.
//
// Events go up through a JetStream stream (SubjectEvents), deduplicated by
// their id; the agent keeps them until the stream acknowledges them.
package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
)

// ProtocolVersion is the version of this protocol.
//
// History:
//
//	1: 2026-11-23: Hello, Heartbeat, PlanRequest, Status, Notify, Command,
//	   LogsRequest, events stream. Later the same day, optional fields only:
//	   PlanWorkload.FieldStamps, HelloReply.LastEventID, PlanRequest.Gzip /
//	   PlanReply.PlanGzip.
//	1: 2026-11-23: optional Status.Metrics (a node's resource summary,
//	   outside the status digest); no version bump: an older hub ignores
//	   the field, an older agent leaves it out.
//	1: 2026-12-06: TelemetryBatch / TelemetryAck on SubjectTelemetry, and
//	   optional Event.Log and NodeMetrics.OutboxDropped / .Telemetry; an
//	   older hub does not answer telemetry, and the agent keeps the records
//	   until one does.
//	1: 2026-12-06: optional PlanWorkload.ImageArtifact (the image tarball
//	   in the hub's artifact store that a container workload's image comes
//	   from) and Status.Images (the image tarballs in the node's cache); an
//	   older agent ignores the first (and needs the image present), an
//	   older hub the second.
//	1: 2026-12-06: optional HelloReply.QuietHeartbeats: the hub takes a
//	   heartbeat without the revisions and status digest it already
//	   confirmed (an idle heartbeat is "{}"); an older hub does not set it
//	   and gets full heartbeats.
//	1: 2026-12-06: optional PlanWorkload.Secrets (sealed to the node's
//	   key) and PlanWorkload.SecretsBlocked; an older agent ignores both
//	   and starts the workload without its secrets.
const ProtocolVersion = 1

// Timing of the sync loop.
const (
	// HeartbeatInterval is how often a connected agent sends a Heartbeat.
	HeartbeatInterval = 10 * time.Second
	// DisconnectedAfter is how long the hub waits without a heartbeat
	// before it shows a node as disconnected (never as failed).
	DisconnectedAfter = 3 * HeartbeatInterval
)

// HubPriority is the settlement priority of the hub's intent. Local
// overrides default to OverridePriority, so the hub wins a conflict unless
// an operator on site says otherwise.
const (
	HubPriority      = 100
	OverridePriority = 50
)

// Subjects. <node> is the node name (a DNS label, so it is a valid single
// NATS token).
const (
	// SubjectHello: agent → hub request, Hello → HelloReply.
	SubjectHello = "atoll.hello."
	// SubjectHeartbeat: agent → hub request, Heartbeat → HeartbeatReply.
	SubjectHeartbeat = "atoll.hb."
	// SubjectPlan: agent → hub request, PlanRequest → PlanReply.
	SubjectPlan = "atoll.plan."
	// SubjectStatus: agent → hub publish, Status.
	SubjectStatus = "atoll.status."
	// SubjectNotify: hub → agent publish, Notify.
	SubjectNotify = "atoll.notify."
	// SubjectLogs: hub → agent request, LogsRequest → LogsReply.
	SubjectLogs = "atoll.logs."
	// SubjectEvents: agent → JetStream stream EventStream, Event, with the
	// event's ID as the Nats-Msg-Id for deduplication.
	SubjectEvents = "atoll.events."
	// EventStream is the JetStream stream that holds every node's events.
	EventStream = "ATOLL_EVENTS"
	// ArtifactStore is the JetStream object store bucket holding artifacts
	// (WASM modules, image archives) by reference: object name
	// "sha256:<hex>". An agent fetches the artifacts its plan names and
	// verifies their digest.
	ArtifactStore = "ATOLL_ARTIFACTS"
)

// Hello announces a node when its agent (re)connects.
type Hello struct {
	ProtocolVersion int               `json:"protocolVersion"`
	Node            string            `json:"node"`
	Labels          map[string]string `json:"labels,omitempty"`
	// CapacityMemory (bytes) and CapacityMilliCPU are what workloads may
	// reserve on the node.
	CapacityMemory   int64    `json:"capacityMemory"`
	CapacityMilliCPU int64    `json:"capacityMilliCPU"`
	Runtimes         []string `json:"runtimes"`
	Version          string   `json:"version"`
}

// HelloReply accepts or refuses a Hello. Error is empty when accepted.
type HelloReply struct {
	ProtocolVersion int    `json:"protocolVersion"`
	PlanRevision    uint64 `json:"planRevision"`
	// LastEventID is the id of the last event the hub's stream holds from
	// this node ("" when none or unknown). A reconnecting agent moves its
	// event cursor past it, so an event whose acknowledgement was lost
	// with the link is not sent again after the stream's duplicate window.
	LastEventID string `json:"lastEventID,omitempty"`
	// QuietHeartbeats: this hub reads a Heartbeat's missing revisions and
	// status digest as "unchanged since the last answered heartbeat", so
	// the agent leaves out what the hub confirmed (bytes every 10 s on a
	// metered link). An empty StatusDigest never asks for the status
	// unless the hub has none.
	QuietHeartbeats bool   `json:"quietHeartbeats,omitempty"`
	Error           string `json:"error,omitempty"`
}

// Heartbeat is the agent's periodic request; it doubles as the ack of
// stored and applied plan revisions and of done commands.
type Heartbeat struct {
	// Node is empty from agents since 2026-12-06: the subject names it.
	Node string `json:"node,omitempty"`
	// StoredRevision is the plan revision the agent has durably stored.
	StoredRevision uint64 `json:"storedRevision,omitempty"`
	// AppliedRevision is the revision the node has converged to.
	AppliedRevision uint64 `json:"appliedRevision,omitempty"`
	// StatusDigest is Status.Digest of the agent's current status; the hub
	// asks for the full status when its copy differs. Revisions and
	// digest are left out when unchanged and the hub said it takes quiet
	// heartbeats (HelloReply.QuietHeartbeats).
	StatusDigest string `json:"statusDigest,omitempty"`
	// DoneCommands are ids of commands the agent has carried out (or
	// refused, or found expired) since the last acknowledged heartbeat.
	DoneCommands []string `json:"doneCommands,omitempty"`
}

// HeartbeatReply tells the agent what it is missing.
type HeartbeatReply struct {
	PlanRevision uint64 `json:"planRevision"`
	// NeedStatus asks the agent to publish its full Status now.
	NeedStatus bool `json:"needStatus,omitempty"`
	// Commands still queued for the node, oldest first.
	Commands []Command `json:"commands,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// PlanRequest asks for the node's plan if it is newer than Have.
type PlanRequest struct {
	Node string `json:"node"`
	Have uint64 `json:"have"`
	// Gzip asks for the plan as PlanReply.PlanGzip: plans repeat
	// themselves (environments, commands) and links may be slow or metered.
	Gzip bool `json:"gzip,omitempty"`
}

// PlanReply carries the plan, or neither field when the agent's is
// current.
type PlanReply struct {
	Plan *Plan `json:"plan,omitempty"`
	// PlanGzip is the plan's JSON, gzip-compressed, when the request asked
	// for it (then Plan is nil).
	PlanGzip []byte `json:"planGzip,omitempty"`
	Error    string `json:"error,omitempty"`
}

// EncodePlanGzip compresses p for PlanReply.PlanGzip.
func EncodePlanGzip(p *Plan) ([]byte, error) {
	b, err := gzipJSON(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}

// maxPlanBytes bounds a decompressed plan (a guard against a gzip bomb).
const maxPlanBytes = 64 << 20

// DecodePlanGzip reverses EncodePlanGzip.
func DecodePlanGzip(b []byte) (*Plan, error) {
	var p Plan
	if err := gunzipJSON(b, maxPlanBytes, &p); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	return &p, nil
}

// gzipJSON is v as gzip-compressed JSON.
func gzipJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gunzipJSON decodes gzip-compressed JSON into v, reading at most limit
// decompressed bytes (a guard against a gzip bomb).
func gunzipJSON(b []byte, limit int64, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return json.NewDecoder(io.LimitReader(zr, limit)).Decode(v)
}

// Plan is the materialised desired state of one node.
type Plan struct {
	Node string `json:"node"`
	// Revision grows by one with every change to this node's plan.
	Revision uint64 `json:"revision"`
	// Stamp is the hub's clock when this revision was made; it dates the
	// removal of a workload, which has no PlanWorkload to carry a stamp.
	Stamp     hlc.Timestamp  `json:"stamp"`
	Workloads []PlanWorkload `json:"workloads"`
}

// PlanWorkload is one workload in a plan, with what settlement needs.
type PlanWorkload struct {
	Workload manifest.Workload `json:"workload"`
	// Stamp is the hub's clock when this workload's spec last changed.
	Stamp hlc.Timestamp `json:"stamp"`
	// FieldStamps is the hub's clock when each field a node can override
	// ("env.KEY") last changed, so a conflict on that field is dated by its
	// own change, not by a later change elsewhere in the spec. A field
	// missing here is dated by Stamp.
	FieldStamps map[string]hlc.Timestamp `json:"fieldStamps,omitempty"`
	// Priority of the hub's intent in settlement; 0 means HubPriority.
	Priority int `json:"priority,omitempty"`
	// ImageArtifact is where a container workload's spec.container.image
	// comes from when it is in the hub's image store (atoll image push);
	// nil when it is not (the node's engine then has it or pulls it).
	ImageArtifact *ImageArtifact `json:"imageArtifact,omitempty"`
	// Secrets are the secrets the workload's spec.secrets name, sorted by
	// name, each sealed to the node's key; absent when it names none or
	// when SecretsBlocked is set.
	Secrets []SealedSecret `json:"secrets,omitempty"`
	// SecretsBlocked says why the node cannot have the secrets the
	// workload names (a secret missing, not targeting the node or lacking
	// a key; the node has no key); the node does not start the workload
	// while it is set. Empty when nothing is missing.
	SecretsBlocked string `json:"secretsBlocked,omitempty"`
}

// SealedSecret is one secret's data, sealed to one node's key.
type SealedSecret struct {
	Name string `json:"name"`
	// Version grows by one with every change to the secret's data.
	Version uint64 `json:"version"`
	// Sealed is the JSON object of the secret's data (key → value),
	// sealed with package seal to the node's key, with SecretAAD as
	// additional data.
	Sealed []byte `json:"sealed"`
}

// SecretAAD is the additional data a SealedSecret is sealed with: it binds
// the sealed bytes to the node, the secret and its version, so that they
// cannot be passed off as another.
func SecretAAD(node, name string, version uint64) []byte {
	return fmt.Appendf(nil, "atoll secret v1\x00%s\x00%s\x00%d", node, name, version)
}

// ImageArtifact is an image archive (docker save or OCI layout tarball)
// in ArtifactStore.
type ImageArtifact struct {
	// Image is the name the workload uses (host/name:tag).
	Image string `json:"image"`
	// Ref is the archive's artifact reference, "sha256:<hex>".
	Ref string `json:"ref"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
}

// Notify tells a connected agent to heartbeat now: its plan or commands
// changed.
type Notify struct {
	PlanRevision uint64 `json:"planRevision"`
	// Revoked tells the node its certificate was revoked: the hub closes
	// its connections and refuses it from now on. The node keeps running
	// its workloads.
	Revoked bool `json:"revoked,omitempty"`
}

// Command kinds.
const (
	CommandRestart = "restart"
)

// Command is a one-off action queued for a node.
type Command struct {
	// ID is the idempotency key: a command with an ID the node has seen is
	// not carried out again.
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Workload string    `json:"workload"`
	Created  time.Time `json:"created"`
	// Expires: a command not carried out by then is dropped, with an event.
	Expires time.Time `json:"expires"`
}

// Status is what a node reports; the node is authoritative for it.
type Status struct {
	Node            string           `json:"node"`
	StoredRevision  uint64           `json:"storedRevision"`
	AppliedRevision uint64           `json:"appliedRevision"`
	Workloads       []WorkloadStatus `json:"workloads"`
	// Overrides are the local overrides in force.
	Overrides []Override `json:"overrides,omitempty"`
	// Digest identifies the content above (not Time, not Metrics).
	Digest string    `json:"digest"`
	Time   time.Time `json:"time"`
	// Metrics is the node's latest resource summary; absent until its
	// first window closes, and from agents that predate it. Its values are
	// not part of the digest: the agent mixes in only the number of
	// summaries it has released, so a summary changes the digest (and
	// sends the status) at most once per release (docs/metrics.md).
	Metrics *Metrics `json:"metrics,omitempty"`
	// Images are the references of the image archives (ImageArtifact.Ref)
	// in the node's cache, sorted; absent from agents that predate them.
	// They are part of the digest.
	Images []string `json:"images,omitempty"`
}

// Override is a change made locally on a node, merged with the plan by
// fixed rules (package settle).
type Override struct {
	ID       string `json:"id"`
	Workload string `json:"workload"`
	// Path is the overridden field: "" for the whole workload, or
	// "env.KEY" for one environment variable of its runtime section.
	Path string `json:"path"`
	// Value is the local value (a manifest.Workload for Path "", a string
	// for env); absent when Deleted.
	Value   []byte `json:"value,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Base is the hub's value of Path when the override was made or last
	// settled; absent when the hub had none. The hub changing the field
	// away from Base is what makes a conflict.
	Base     []byte        `json:"base,omitempty"`
	Stamp    hlc.Timestamp `json:"stamp"`
	Priority int           `json:"priority"`
}

// LogsRequest asks an agent for the tail of a workload's log.
type LogsRequest struct {
	Workload string `json:"workload"`
	// Tail is the number of lines; 0 means the agent's default (100).
	Tail int `json:"tail"`
}

// LogsReply carries log bytes, at most MaxLogsReply of them.
type LogsReply struct {
	Data  []byte `json:"data"`
	Error string `json:"error,omitempty"`
}

// MaxLogsReply bounds a LogsReply's Data (NATS's default max payload is 1 MiB).
const MaxLogsReply = 512 << 10

// Application messages (telemetry): workloads publish on the node's local
// broker; the subjects their manifests declare (spec.forward) are kept in
// the node's outbox and forwarded to the hub in batches over
// SubjectTelemetry. The hub stores each record once in TelemetryStream,
// on TelemetrySubjectPrefix + "<node>." + the record's subject.
const (
	// SubjectTelemetry: agent → hub request, a gzip-compressed JSON
	// TelemetryBatch → TelemetryAck.
	SubjectTelemetry = "atoll.tm."
	// TelemetryStream is the JetStream stream holding forwarded records.
	TelemetryStream = "ATOLL_TELEMETRY"
	// TelemetrySubjectPrefix starts the subject of every stored record:
	// atoll.telemetry.<node>.<subject>.
	TelemetrySubjectPrefix = "atoll.telemetry."
	// Headers of every stored record: the node, its outbox epoch and the
	// record's sequence in it, and when the node accepted it (RFC 3339).
	HeaderNode  = "Atoll-Node"
	HeaderEpoch = "Atoll-Epoch"
	HeaderSeq   = "Atoll-Seq"
	HeaderTime  = "Atoll-Time"
)

// TelemetryBatch carries records from a node's outbox, oldest first, with
// consecutive sequence numbers. A batch with no records asks only for the
// acknowledgement: an agent sends one when it (re)connects, to learn where
// the hub stands.
type TelemetryBatch struct {
	Node string `json:"node"`
	// Epoch names the node's outbox: sequence numbers count within it. A
	// node whose outbox was created anew (its data directory lost) has a
	// new epoch, and its sequence numbers start again from 1. It is 1 to
	// 64 letters, digits, '-' or '_' (it is part of each stored record's
	// id, <node>/<epoch>/<seq>); the hub refuses a batch with another.
	Epoch   string            `json:"epoch"`
	Records []TelemetryRecord `json:"records,omitempty"`
}

// TelemetryRecord is one message a workload published.
type TelemetryRecord struct {
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Time    time.Time `json:"time"`
	Data    []byte    `json:"data"`
}

// TelemetryAck says how far the hub holds the node's records. Stored is
// the highest Seq of Epoch the hub holds, with every Seq below it that was
// sent; the hub skips records at or below it, so a batch sent again, even
// days later, is stored once. An Epoch other than the batch's means the hub
// holds nothing of the batch's epoch yet (Stored is then about that other
// epoch). Error is set when nothing was stored; the agent sends the batch
// again later.
type TelemetryAck struct {
	Epoch  string `json:"epoch"`
	Stored uint64 `json:"stored"`
	Error  string `json:"error,omitempty"`
}

// EncodeTelemetryBatch is the body of a SubjectTelemetry request.
func EncodeTelemetryBatch(b TelemetryBatch) ([]byte, error) {
	body, err := gzipJSON(b)
	if err != nil {
		return nil, fmt.Errorf("encode telemetry batch: %w", err)
	}
	return body, nil
}

// MaxTelemetryBatch bounds a batch's uncompressed size, so a hub never
// inflates a small request into an unbounded one.
const MaxTelemetryBatch = 4 << 20

// DecodeTelemetryBatch reads a SubjectTelemetry request body.
func DecodeTelemetryBatch(body []byte) (TelemetryBatch, error) {
	var b TelemetryBatch
	if err := gunzipJSON(body, MaxTelemetryBatch, &b); err != nil {
		return b, fmt.Errorf("telemetry batch: %w", err)
	}
	return b, nil
}
