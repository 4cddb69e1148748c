// Package audit keeps the hub's audit log, the JetStream stream
// ATOLL_AUDIT: one api.AuditEntry per changing API call (who, what, when,
// from where, with which outcome), bounded by age and size, the oldest
// entries dropped first. The stream refuses deleting or purging messages:
// entries leave it only by those limits.
//
// A call is recorded twice, both on the one subject atoll.audit: before it
// runs, with Status 0 (its intent), and after, with its status (its
// outcome). The caller (package hub/authz) refuses the call when the
// intent cannot be written, so no change escapes the log; when the outcome
// cannot be written, the intent stays and List shows the call with Status
// 0. List merges the two records of a call into one entry. A refused call
// is recorded once, with its status.
package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/streamq"
)

// The stream and its subject.
const (
	Stream  = "ATOLL_AUDIT"
	Subject = "atoll.audit"
)

// Default limits of the stream.
const (
	DefaultMaxAge   = 90 * 24 * time.Hour
	DefaultMaxBytes = 256 << 20
)

// Config tunes the stream.
type Config struct {
	// Replicas for a clustered JetStream; 0 means 1.
	Replicas int
	// MaxAge and MaxBytes bound the stream; 0 means DefaultMaxAge and
	// DefaultMaxBytes.
	MaxAge   time.Duration
	MaxBytes int64
}

// Log is the audit stream.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open creates the stream, or updates its limits to these.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "atoll audit log: the hub API's changing calls",
		Subjects:    []string{Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cmp.Or(cfg.MaxAge, DefaultMaxAge),
		MaxBytes:    cmp.Or(cfg.MaxBytes, DefaultMaxBytes),
		Replicas:    max(cfg.Replicas, 1),
		DenyDelete:  true,
		DenyPurge:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open audit stream: %w", err)
	}
	return &Log{js: js, stream: s}, nil
}

// Record stores e once the stream has it; an error means it may not have.
func (l *Log) Record(ctx context.Context, e api.AuditEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("record audit entry %s: %w", e.ID, err)
	}
	if _, err := l.js.Publish(ctx, Subject, b); err != nil {
		return fmt.Errorf("record audit entry %s: %w", e.ID, err)
	}
	return nil
}

// List returns the newest q.Limit calls received at or after q.Since,
// newest last (by the time the hub received them), each the merge of its
// records: the outcome when there is one, else the intent.
func (l *Log) List(ctx context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list audit entries: limit must be positive, not %d", q.Limit)
	}
	// A call has at most two records, and its outcome comes after its
	// intent, so the newest 2*Limit records hold the newest Limit calls
	// whole.
	msgs, err := streamq.Read(ctx, l.stream, streamq.Query{Filters: []string{Subject}, Limit: 2 * q.Limit})
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	byID := make(map[string]int, len(msgs))
	out := make([]api.AuditEntry, 0, len(msgs))
	for _, m := range msgs {
		e := decode(m)
		if e.Time.Before(q.Since) {
			continue
		}
		if i, ok := byID[e.ID]; ok {
			out[i] = e // the outcome, stored after the intent
			continue
		}
		byID[e.ID] = len(out)
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b api.AuditEntry) int { return a.Time.Compare(b.Time) })
	return out[max(0, len(out)-q.Limit):], nil
}

// decode reads a stored entry; a message that is not one is returned
// with the error, by its stream sequence, rather than dropped, so that
// nothing disappears silently.
func decode(m jetstream.Msg) api.AuditEntry {
	var e api.AuditEntry
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		e = api.AuditEntry{Error: fmt.Sprintf("undecodable audit record: %v", err)}
		if md, err := m.Metadata(); err == nil {
			e.ID = fmt.Sprintf("stream-seq-%d", md.Sequence.Stream)
			e.Time = md.Timestamp
		}
	}
	return e
}
