// Package intent is the hub's durable state on JetStream KV: workloads (the
// operator's intent), nodes, per-node plans, node statuses and queued
// commands. Every read-modify-write goes through compare-and-set on the
// KV revision, so several hubs can share one store.
//
// Schema (one bucket per table, file storage, values are JSON):
//
//	atoll-meta       schema             → "1"
//	atoll-workloads  <workload name>    → Workload  {manifest, stamp, created, updated}
//	atoll-nodes      <node name>        → Node      {labels, capacity, runtimes, version,
//	                                                 firstSeen, lastSeen, stored/applied revision}
//	atoll-plans      <node name>        → wire.Plan (history 8: the last revisions)
//	atoll-statuses   <node name>        → wire.Status (the last full status)
//	atoll-commands   <node name>        → Commands  {one-off commands, oldest first}
//	atoll-images     "all"              → Images    {image name → archive ref, size}
//	atoll-secrets    <secret name>      → Secret    {keys, placement, version, data encrypted
//	                                                 with the hub's key, created, updated}
//
// Workload and node names are DNS labels, so they are valid KV keys.
// Commands are one document per node, not one key per command, so that a
// heartbeat reads a node's queue with one request and queueing with an
// idempotency key is a single compare-and-set.
package intent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 1

// Bucket names.
const (
	BucketMeta      = "atoll-meta"
	BucketWorkloads = "atoll-workloads"
	BucketNodes     = "atoll-nodes"
	BucketPlans     = "atoll-plans"
	BucketStatuses  = "atoll-statuses"
	BucketCommands  = "atoll-commands"
	BucketImages    = "atoll-images"
	BucketSecrets   = "atoll-secrets"
)

// ImagesKey is the one key of BucketImages: image names are not valid KV
// keys (they hold ':'), and an image list is small.
const ImagesKey = "all"

// Image is an image in the hub's image store: a name and the archive it
// comes from.
type Image struct {
	// Name is host/name:tag as workloads write it.
	Name string `json:"name"`
	// Ref is the archive's artifact reference, "sha256:<hex>".
	Ref    string    `json:"ref"`
	Size   int64     `json:"size"`
	Pushed time.Time `json:"pushed"`
}

// Images is the image store's index, sorted by name.
type Images struct {
	Images []Image `json:"images"`
}

// Errors.
var (
	// ErrNotFound: the key is absent (or deleted).
	ErrNotFound = errors.New("not found")
	// ErrConflict: another writer changed the key since it was read.
	ErrConflict = errors.New("changed concurrently")
)

// Workload is a stored workload.
type Workload struct {
	// Manifest is normalized (manifest.Normalize).
	Manifest manifest.Workload `json:"manifest"`
	// Stamp is the hub's clock when the manifest last changed.
	Stamp hlc.Timestamp `json:"stamp"`
	// FieldStamps dates each overridable field ("env.KEY") by its own last
	// change (wire.PlanWorkload.FieldStamps).
	FieldStamps map[string]hlc.Timestamp `json:"fieldStamps,omitempty"`
	Created     time.Time                `json:"created"`
	Updated     time.Time                `json:"updated"`
}

// Secret is a stored secret. Its data never appears in plaintext: Data is
// the JSON object of the data (key → value) encrypted by package seal
// under the hub's key (seal.Encrypt), with SecretAAD.
type Secret struct {
	Labels map[string]string `json:"labels,omitempty"`
	// Keys are the data's keys, sorted: what may be shown.
	Keys      []string           `json:"keys"`
	Placement manifest.Placement `json:"placement"`
	// Version grows by one with every change to the data.
	Version uint64    `json:"version"`
	Data    []byte    `json:"data"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// SecretAAD is the additional data of a stored secret's Data: it binds
// the bytes to the secret's name and version.
func SecretAAD(name string, version uint64) []byte {
	return fmt.Appendf(nil, "atoll stored secret v1\x00%s\x00%d", name, version)
}

// Node is a node as last announced (Hello) and last persisted seen.
type Node struct {
	Labels           map[string]string `json:"labels,omitempty"`
	CapacityMemory   int64             `json:"capacityMemory,omitempty"`
	CapacityMilliCPU int64             `json:"capacityMilliCPU,omitempty"`
	Runtimes         []string          `json:"runtimes,omitempty"`
	Version          string            `json:"version,omitempty"`
	FirstSeen        time.Time         `json:"firstSeen"`
	// LastSeen is persisted on connect and disconnect and at most every
	// fleet.PersistEvery in between; the hubs' memory has the fresh value.
	LastSeen        time.Time `json:"lastSeen"`
	StoredRevision  uint64    `json:"storedRevision"`
	AppliedRevision uint64    `json:"appliedRevision"`
}

// Command states.
const (
	CommandQueued  = "queued"
	CommandDone    = "done"
	CommandExpired = "expired"
)

// Command is a one-off command and its fate.
type Command struct {
	wire.Command
	// State is CommandQueued, CommandDone or CommandExpired.
	State string `json:"state"`
	// IdempotencyKey is the client's key, if it gave one; unique per node.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Finished is when the command became done or expired.
	Finished time.Time `json:"finished,omitzero"`
}

// Commands is one node's command queue, oldest first.
type Commands struct {
	Commands []Command `json:"commands"`
}

// Config tunes the buckets.
type Config struct {
	// Replicas is the number of copies a clustered JetStream keeps of each
	// bucket; 0 means 1.
	Replicas int
}

// Store is the hub's tables.
type Store struct {
	Workloads *Table[Workload]
	Nodes     *Table[Node]
	Plans     *Table[wire.Plan]
	Statuses  *Table[wire.Status]
	Commands  *Table[Commands]
	Images    *Table[Images]
	Secrets   *Table[Secret]
}

// Open creates the buckets that do not exist yet and checks the schema
// version.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	replicas := max(cfg.Replicas, 1)
	open := func(bucket, desc string, history uint8) (jetstream.KeyValue, error) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: desc, History: history,
			Storage: jetstream.FileStorage, Replicas: replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("open intent store: bucket %s: %w", bucket, err)
		}
		return kv, nil
	}
	meta, err := open(BucketMeta, "atoll hub store metadata", 1)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, meta); err != nil {
		return nil, err
	}
	s := &Store{}
	tables := []struct {
		bucket, desc string
		history      uint8
		set          func(jetstream.KeyValue)
	}{
		{BucketWorkloads, "atoll workloads (intent)", 1, func(kv jetstream.KeyValue) { s.Workloads = NewTable[Workload](kv, "workload") }},
		{BucketNodes, "atoll nodes", 1, func(kv jetstream.KeyValue) { s.Nodes = NewTable[Node](kv, "node") }},
		{BucketPlans, "atoll per-node plans", 8, func(kv jetstream.KeyValue) { s.Plans = NewTable[wire.Plan](kv, "plan") }},
		{BucketStatuses, "atoll node statuses", 1, func(kv jetstream.KeyValue) { s.Statuses = NewTable[wire.Status](kv, "status") }},
		{BucketCommands, "atoll queued commands", 1, func(kv jetstream.KeyValue) { s.Commands = NewTable[Commands](kv, "commands") }},
		{BucketImages, "atoll image store index", 1, func(kv jetstream.KeyValue) { s.Images = NewTable[Images](kv, "images") }},
		{BucketSecrets, "atoll secrets (encrypted)", 1, func(kv jetstream.KeyValue) { s.Secrets = NewTable[Secret](kv, "secret") }},
	}
	for _, tb := range tables {
		kv, err := open(tb.bucket, tb.desc, tb.history)
		if err != nil {
			return nil, err
		}
		tb.set(kv)
	}
	return s, nil
}

func checkSchema(ctx context.Context, meta jetstream.KeyValue) error {
	want := strconv.Itoa(SchemaVersion)
	e, err := meta.Get(ctx, "schema")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if _, err := meta.Create(ctx, "schema", []byte(want)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("open intent store: write schema version: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("open intent store: read schema version: %w", err)
	}
	got, err := strconv.Atoi(string(e.Value()))
	if err != nil {
		return fmt.Errorf("open intent store: schema version %q: %w", e.Value(), err)
	}
	if got > SchemaVersion {
		return fmt.Errorf("open intent store: schema version %d is newer than this hub's (%d); upgrade the hub", got, SchemaVersion)
	}
	return nil
}

// LatestStamp is the largest hlc stamp the store holds (workload and plan
// stamps): what the hub's clock must start after.
func (s *Store) LatestStamp(ctx context.Context) (hlc.Timestamp, error) {
	var last hlc.Timestamp
	ws, err := s.Workloads.All(ctx)
	if err != nil {
		return last, err
	}
	for _, w := range ws {
		if last.Before(w.Value.Stamp) {
			last = w.Value.Stamp
		}
	}
	ps, err := s.Plans.All(ctx)
	if err != nil {
		return last, err
	}
	for _, p := range ps {
		if last.Before(p.Value.Stamp) {
			last = p.Value.Stamp
		}
	}
	return last, nil
}
