package intent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxAttempts bounds Table.Update's compare-and-set retries.
const maxAttempts = 32

// Table is one KV bucket of JSON values of type T.
type Table[T any] struct {
	kv   jetstream.KeyValue
	name string
}

// NewTable returns a table over kv whose errors call its values name
// ("workload"). Other hub packages keep their own buckets in tables too.
func NewTable[T any](kv jetstream.KeyValue, name string) *Table[T] {
	return &Table[T]{kv: kv, name: name}
}

// Entry is a value with its key and KV revision (the bucket-wide sequence
// of the write that stored it, which compare-and-set writes name).
type Entry[T any] struct {
	Key   string
	Value T
	Rev   uint64
}

// Get reads key; ErrNotFound when it is absent or deleted.
func (t *Table[T]) Get(ctx context.Context, key string) (Entry[T], error) {
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Entry[T]{}, fmt.Errorf("get %s %s: %w", t.name, key, ErrNotFound)
	}
	if err != nil {
		return Entry[T]{}, fmt.Errorf("get %s %s: %w", t.name, key, err)
	}
	return t.decode(e)
}

func (t *Table[T]) decode(e jetstream.KeyValueEntry) (Entry[T], error) {
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return Entry[T]{}, fmt.Errorf("decode %s %s@%d: %w", t.name, e.Key(), e.Revision(), err)
	}
	return Entry[T]{Key: e.Key(), Value: v, Rev: e.Revision()}, nil
}

// All reads every live entry, sorted by key, with one ordered consumer
// rather than a request per key.
func (t *Table[T]) All(ctx context.Context) ([]Entry[T], error) {
	w, err := t.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.name, err)
	}
	defer w.Stop()
	var out []Entry[T]
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", t.name, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: watcher stopped", t.name)
			}
			if e == nil { // every current value has been delivered
				sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
				return out, nil
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			d, err := t.decode(e)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", t.name, err)
			}
			out = append(out, d)
		}
	}
}

// Put writes v at key if the key's current revision is rev (0: the key
// must be absent or deleted), and returns the new revision. Another
// writer's change in between is ErrConflict.
func (t *Table[T]) Put(ctx context.Context, key string, v T, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("put %s %s: %w", t.name, key, err)
	}
	var n uint64
	if rev == 0 {
		n, err = t.kv.Create(ctx, key, b)
	} else {
		n, err = t.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("put %s %s@%d: %w", t.name, key, rev, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("put %s %s: %w", t.name, key, err)
	}
	return n, nil
}

// Delete deletes key if its current revision is rev.
func (t *Table[T]) Delete(ctx context.Context, key string, rev uint64) error {
	err := t.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("delete %s %s@%d: %w", t.name, key, rev, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", t.name, key, err)
	}
	return nil
}

// Update reads key, lets f compute the new value from the current one
// (exists is false when there is none), and writes it with compare-and-set,
// retrying from the read when another writer got there first. f returns
// write=false to leave the key as it is; it may run several times. Update
// returns the entry now stored (the current one when nothing was written)
// and whether it wrote.
func (t *Table[T]) Update(ctx context.Context, key string, f func(cur T, exists bool) (next T, write bool, err error)) (Entry[T], bool, error) {
	for attempt := range maxAttempts {
		cur, err := t.Get(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Entry[T]{}, false, err
		}
		next, write, err := f(cur.Value, exists)
		if err != nil || !write {
			return cur, false, err
		}
		rev, err := t.Put(ctx, key, next, cur.Rev)
		if errors.Is(err, ErrConflict) {
			if err := pause(ctx, attempt); err != nil {
				return Entry[T]{}, false, fmt.Errorf("update %s %s: %w", t.name, key, err)
			}
			continue
		}
		if err != nil {
			return Entry[T]{}, false, err
		}
		return Entry[T]{Key: key, Value: next, Rev: rev}, true, nil
	}
	return Entry[T]{}, false, fmt.Errorf("update %s %s: %d attempts: %w", t.name, key, maxAttempts, ErrConflict)
}

// pause spreads out writers that keep colliding on one key: a random
// wait of up to attempt+1 milliseconds.
func pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// History lists key's retained values, oldest first.
func (t *Table[T]) History(ctx context.Context, key string) ([]Entry[T], error) {
	es, err := t.kv.History(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history %s %s: %w", t.name, key, err)
	}
	var out []Entry[T]
	for _, e := range es {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		d, err := t.decode(e)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
