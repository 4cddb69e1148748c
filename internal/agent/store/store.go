// Package store keeps the node agent's durable state (desired workloads,
// their runtime instances and an event log) in one bbolt file, and recovers
// from a corrupt file by restoring the last good snapshot.
package store

// Layout of DIR/state.db (bbolt), schema version 1. Every value is JSON, so
// a full read at Open can decode each record and tell a good file from a
// damaged one.
//
//	state.db
//	├── meta/
//	│   ├── "version"  → 1                        schema version (JSON number)
//	│   └── "epoch"    → "3f9a0c2b7d1e4a56"       random, 16 hex digits; prefix of
//	│                                             event IDs, renewed on every recovery
//	├── workloads/
//	│   └── <name>     → {…}                      workload document, canonical JSON,
//	│                                             opaque to the store
//	├── instances/
//	│   └── <name>     → {"handle":…,"restarts":…,"startedAt":…}    Instance
//	└── events/                                   bucket sequence = last assigned Seq
//	    └── <seq>      → {"seq":…,"id":…,"time":…,"type":…,…}       Event; key is
//	                                              Seq as 8-byte big-endian, so
//	                                              cursor order is Seq order
//
// Files next to it in DIR:
//
//	state.db.good                    last good snapshot: a tx.WriteTo copy taken after
//	                                 every change of desired state (temp → fsync →
//	                                 rename → fsync DIR)
//	state.db.corrupt-<unix-nanos>    a corrupt state.db, moved aside by Open
//	state.db.good.corrupt-<nanos>    a corrupt snapshot, moved aside by Open
//	.state.db.tmp-*                  temp files of an interrupted write; Open removes them

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/wire"
)

// SchemaVersion is the version of the bucket layout this package reads and
// writes. Open refuses files with a newer version.
const SchemaVersion = 1

// DefaultEventRetention is how many events the store keeps when
// Options.EventRetention is zero.
const DefaultEventRetention = 1000

var (
	bucketMeta      = []byte("meta")
	bucketWorkloads = []byte("workloads")
	bucketInstances = []byte("instances")
	bucketEvents    = []byte("events")

	keyVersion = []byte("version")
	keyEpoch   = []byte("epoch")
)

var (
	// ErrLocked is returned by Open when another process holds state.db.
	ErrLocked = errors.New("state.db is locked")
	// ErrNewerSchema is returned by Open when state.db was written with a
	// schema version newer than SchemaVersion.
	ErrNewerSchema = errors.New("state.db was written by a newer agent")
)

// errUnchanged makes an Update roll back when there is nothing to write, so
// no page and no meta page is written.
var errUnchanged = errors.New("unchanged")

// Options tunes a Store. The zero value is usable.
type Options struct {
	// EventRetention is how many events are kept; older ones are dropped
	// first. Zero or negative means DefaultEventRetention.
	EventRetention int
	// Clock stamps events that come without a Time and names corrupt files.
	// Nil means the wall clock.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.EventRetention <= 0 {
		o.EventRetention = DefaultEventRetention
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}

// Store is the agent's durable state. Its methods are safe for concurrent
// use.
type Store struct {
	db    *bolt.DB
	dir   string
	opts  Options
	epoch string

	// snapMu serialises snapshot writes, so a later snapshot never loses
	// the rename race against an earlier one.
	snapMu    sync.Mutex
	snapDirty bool // the last snapshot attempt failed; guarded by snapMu

	// writes counts committed write transactions; tests read it to prove
	// unchanged puts write nothing.
	writes atomic.Uint64
}

// Close closes the database file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

// update runs fn in a write transaction and counts the commit. When fn
// returns errUnchanged the transaction rolls back and nothing is written.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	err := s.db.Update(fn)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

// PutWorkload stores the desired-state document of a workload. doc must be
// valid JSON; callers pass it in canonical form so equal documents have equal
// bytes. When the stored bytes already equal doc nothing is written and
// changed is false.
//
// After a change the snapshot state.db.good is rewritten. If that fails the
// change is still saved: changed is true, err says the snapshot failed, and
// the next PutWorkload or DeleteWorkload tries the snapshot again.
func (s *Store) PutWorkload(name string, doc []byte) (changed bool, err error) {
	if name == "" {
		return false, errors.New("put workload: empty name")
	}
	if !json.Valid(doc) {
		return false, fmt.Errorf("put workload %s: document is not valid JSON", name)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWorkloads)
		if old := b.Get([]byte(name)); old != nil && bytes.Equal(old, doc) {
			return errUnchanged
		}
		return b.Put([]byte(name), bytes.Clone(doc))
	})
	if errors.Is(err, errUnchanged) {
		if err := s.retrySnapshot(); err != nil {
			return false, fmt.Errorf("put workload %s: %w", name, err)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("put workload %s: %w", name, err)
	}
	if err := s.writeSnapshot(); err != nil {
		return true, fmt.Errorf("put workload %s: saved, but %w", name, err)
	}
	return true, nil
}

// DeleteWorkload removes a workload's document. existed reports whether the
// document was there. Like PutWorkload it rewrites the snapshot after a
// change. The workload's Instance is left alone: the supervisor removes it
// (DeleteInstance) once the instance is gone, so a document removed while
// its workload still runs never orphans the process.
func (s *Store) DeleteWorkload(name string) (existed bool, err error) {
	key := []byte(name)
	err = s.update(func(tx *bolt.Tx) error {
		w := tx.Bucket(bucketWorkloads)
		if existed = w.Get(key) != nil; !existed {
			return errUnchanged
		}
		return w.Delete(key)
	})
	if errors.Is(err, errUnchanged) {
		if err := s.retrySnapshot(); err != nil {
			return false, fmt.Errorf("delete workload %s: %w", name, err)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete workload %s: %w", name, err)
	}
	if !existed {
		return false, nil
	}
	if err := s.writeSnapshot(); err != nil {
		return true, fmt.Errorf("delete workload %s: deleted, but %w", name, err)
	}
	return true, nil
}

// Workloads returns every stored workload document by name. The map and the
// slices are the caller's.
func (s *Store) Workloads() (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWorkloads).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read workloads: %w", err)
	}
	return out, nil
}

// Instance is the runtime state of a workload instance on this node.
type Instance struct {
	Handle    *driver.Handle `json:"handle,omitempty"`
	Restarts  int            `json:"restarts"`
	StartedAt time.Time      `json:"startedAt,omitzero"`
	// Finished is the final state ("stopped" or "failed") once the restart
	// policy gave up on the workload, with the reason; empty otherwise. It
	// keeps a finished workload finished across agent restarts.
	Finished string `json:"finished,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// PutInstance stores the runtime state of a workload. StartedAt is kept in
// UTC. Nothing is written when the stored instance is already equal. The
// store does not require the workload's document to exist. A new handle
// also rewrites the snapshot, so a store recovered from it still knows the
// running instance and adopts it instead of starting a second one.
func (s *Store) PutInstance(name string, in Instance) error {
	if name == "" {
		return errors.New("put instance: empty name")
	}
	if !in.StartedAt.IsZero() {
		in.StartedAt = in.StartedAt.UTC()
	}
	v, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("put instance %s: %w", name, err)
	}
	newHandle := false
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInstances)
		old := b.Get([]byte(name))
		if old != nil && bytes.Equal(old, v) {
			return errUnchanged
		}
		var prev Instance
		if old != nil {
			_ = json.Unmarshal(old, &prev) // checked at Open; a bad record only means "changed"
		}
		newHandle = !sameHandle(prev.Handle, in.Handle)
		return b.Put([]byte(name), v)
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("put instance %s: %w", name, err)
	}
	if newHandle {
		if err := s.writeSnapshot(); err != nil {
			return fmt.Errorf("put instance %s: saved, but %w", name, err)
		}
	}
	return nil
}

func sameHandle(a, b *driver.Handle) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Driver == b.Driver && a.Version == b.Version && bytes.Equal(a.State, b.State)
}

// DeleteInstance removes a workload's runtime state; absent is not an error.
func (s *Store) DeleteInstance(name string) error {
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInstances)
		if b.Get([]byte(name)) == nil {
			return errUnchanged
		}
		return b.Delete([]byte(name))
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	return nil
}

// Instance returns the runtime state of a workload; ok is false when none is
// stored.
func (s *Store) Instance(name string) (in Instance, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketInstances).Get([]byte(name))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &in)
	})
	if err != nil {
		return Instance{}, false, fmt.Errorf("read instance %s: %w", name, err)
	}
	return in, ok, nil
}

// Instances returns the runtime state of every workload that has one.
func (s *Store) Instances() (map[string]Instance, error) {
	out := make(map[string]Instance)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstances).ForEach(func(k, v []byte) error {
			var in Instance
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			out[string(k)] = in
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	return out, nil
}

// valuePrefix keeps named values apart from meta's own records.
const valuePrefix = "v:"

// PutValue stores a small JSON value under key (in the meta bucket, so a
// full read at Open checks it like everything else). Nothing is written
// when it is unchanged. Use PutDesired for values that are desired state.
func (s *Store) PutValue(key string, v []byte) (changed bool, err error) {
	if !json.Valid(v) {
		return false, fmt.Errorf("put value %s: not valid JSON", key)
	}
	k := []byte(valuePrefix + key)
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if old := b.Get(k); old != nil && bytes.Equal(old, v) {
			return errUnchanged
		}
		return b.Put(k, bytes.Clone(v))
	})
	if errors.Is(err, errUnchanged) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("put value %s: %w", key, err)
	}
	return true, nil
}

// PutDesired is PutValue for desired state (a node's plan, its overrides):
// after a change the snapshot state.db.good is rewritten, as for workloads.
func (s *Store) PutDesired(key string, v []byte) (changed bool, err error) {
	if changed, err = s.PutValue(key, v); err != nil || !changed {
		return changed, err
	}
	if err := s.writeSnapshot(); err != nil {
		return true, fmt.Errorf("put %s: saved, but %w", key, err)
	}
	return true, nil
}

// Value returns the value stored under key, nil when there is none.
func (s *Store) Value(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketMeta).Get([]byte(valuePrefix + key)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read value %s: %w", key, err)
	}
	return out, nil
}

// Event is one entry of the event log.
//
// Seq increases by one per appended event. After Open reports a Recovery the
// log is the snapshot's, so Seq may repeat values handed out before the
// corruption; ID never repeats, because its prefix (the epoch) is renewed on
// every recovery.
type Event = wire.Event

// Keys of the event log's bookkeeping in the meta bucket (values, so they
// read like PutValue's).
const (
	keyEventCursor       = valuePrefix + "events.cursor"
	keyDroppedUnreported = valuePrefix + "events.dropped.unreported"
	keyDroppedTotal      = valuePrefix + "events.dropped.total"
)

// EventDropped is the type of the event that reports undelivered events
// dropped by the retention (ReportDroppedEvents).
const EventDropped = "events-dropped"

// AppendEvent adds e to the log and returns it with Seq and ID assigned. A
// zero Time is set from the clock; Time is kept in UTC. When the log is longer
// than the retention the oldest events are dropped; those the hub had not
// acknowledged (above EventCursor) are counted, to be reported by
// ReportDroppedEvents.
func (s *Store) AppendEvent(e Event) (Event, error) {
	if e.Type == "" {
		return Event{}, errors.New("append event: empty type")
	}
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		e, err = s.appendEvent(tx, e, true)
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("append event %s: %w", e.Type, err)
	}
	return e, nil
}

// appendEvent appends e in tx and, if trim, drops what the retention
// leaves out.
func (s *Store) appendEvent(tx *bolt.Tx, e Event, trim bool) (Event, error) {
	if e.Time.IsZero() {
		e.Time = s.opts.Clock.Now()
	}
	e.Time = e.Time.UTC()
	keep := uint64(s.opts.EventRetention)
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return e, err
	}
	e.Seq = seq
	e.ID = s.epoch + "-" + strconv.FormatUint(seq, 10)
	v, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return e, err
	}
	// Keys are contiguous from the oldest kept event to seq, so
	// everything at or below seq-keep goes.
	if !trim || seq <= keep {
		return e, nil
	}
	meta := tx.Bucket(bucketMeta)
	cursor := metaUint(meta, keyEventCursor)
	var drop [][]byte
	undelivered := uint64(0)
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-keep; k, _ = c.Next() {
		drop = append(drop, bytes.Clone(k))
		if binary.BigEndian.Uint64(k) > cursor {
			undelivered++
		}
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return e, err
		}
	}
	if undelivered == 0 {
		return e, nil
	}
	if err := putMetaUint(meta, keyDroppedUnreported, metaUint(meta, keyDroppedUnreported)+undelivered); err != nil {
		return e, err
	}
	return e, putMetaUint(meta, keyDroppedTotal, metaUint(meta, keyDroppedTotal)+undelivered)
}

// EventCursor is the Seq of the last event the hub acknowledged.
func (s *Store) EventCursor() (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		seq = metaUint(tx.Bucket(bucketMeta), keyEventCursor)
		return nil
	})
	return seq, err
}

// SetEventCursor records that the hub acknowledged every event up to seq.
func (s *Store) SetEventCursor(seq uint64) error {
	if err := s.update(func(tx *bolt.Tx) error {
		return putMetaUint(tx.Bucket(bucketMeta), keyEventCursor, seq)
	}); err != nil {
		return fmt.Errorf("set event cursor: %w", err)
	}
	return nil
}

// ReportDroppedEvents appends one EventDropped event saying how many
// events the hub had not acknowledged were dropped since the last report,
// and resets that count; ok is false when there is nothing to report. The
// uplink calls it before it sends events, so an outage that overflows the
// log costs one report when the link returns, not one per drop. The
// report is not trimmed (the log may hold one event over the retention
// until the next append): it must not push out an event it would then
// have to report.
func (s *Store) ReportDroppedEvents() (e Event, ok bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		n := metaUint(meta, keyDroppedUnreported)
		if n == 0 {
			return nil
		}
		total := metaUint(meta, keyDroppedTotal)
		if err := putMetaUint(meta, keyDroppedUnreported, 0); err != nil {
			return err
		}
		e, err = s.appendEvent(tx, Event{Type: EventDropped, Message: fmt.Sprintf(
			"%d events the hub had not received were dropped, oldest first: the node keeps the last %d (%d dropped in all)",
			n, s.opts.EventRetention, total)}, false)
		ok = err == nil
		return err
	})
	if err != nil {
		return Event{}, false, fmt.Errorf("report dropped events: %w", err)
	}
	return e, ok, nil
}

// DroppedEvents is how many events the hub had not acknowledged were ever
// dropped by the retention.
func (s *Store) DroppedEvents() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = metaUint(tx.Bucket(bucketMeta), keyDroppedTotal)
		return nil
	})
	return n, err
}

// metaUint reads a JSON number from meta; a missing or unreadable one is 0.
func metaUint(meta *bolt.Bucket, key string) uint64 {
	var n uint64
	if v := meta.Get([]byte(key)); v != nil {
		_ = json.Unmarshal(v, &n)
	}
	return n
}

func putMetaUint(meta *bolt.Bucket, key string, n uint64) error {
	return meta.Put([]byte(key), strconv.AppendUint(nil, n, 10))
}

// Events returns up to limit events with Seq greater than afterSeq, oldest
// first. limit <= 0 means all of them.
func (s *Store) Events(afterSeq uint64, limit int) ([]Event, error) {
	var out []Event
	if afterSeq == ^uint64(0) {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read events after %d: %w", afterSeq, err)
	}
	return out, nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}
