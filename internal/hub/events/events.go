// Package events is the hub's side of the event stream: it creates the
// JetStream stream (wire.EventStream) that agents publish their events to,
// publishes the hub's own events there, and reads events back for the API.
//
// Subjects: a node publishes on atoll.events.<node>; the hub publishes what
// it observes about a node (connected, disconnected, command expired) on
// atoll.events._hub.<node>. "_hub" cannot be a node name (node names are
// DNS labels), so no node can pose as the hub.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/streamq"
	"atoll.dev/atoll/internal/wire"
)

// Stream limits.
const (
	// MaxAge is how long events are kept.
	MaxAge = 30 * 24 * time.Hour
	// MaxBytes bounds the stream; the oldest events go first.
	MaxBytes = 1 << 30
	// DuplicateWindow is how long the stream remembers event ids: an agent
	// retrying a publish within it does not store the event twice.
	DuplicateWindow = 10 * time.Minute
)

// HubToken is the subject token of the hub's own events.
const HubToken = "_hub"

// Types of the hub's events.
const (
	TypeNodeConnected    = "node-connected"
	TypeNodeDisconnected = "node-disconnected"
	TypeCommandExpired   = "command-expired"
	// TypeInvalid marks a stored message that is not a wire.Event.
	TypeInvalid = "invalid"
)

// Config tunes the stream.
type Config struct {
	// Replicas for a clustered JetStream; 0 means 1.
	Replicas int
}

// Log is the event stream.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open creates the stream, or updates its limits to these.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        wire.EventStream,
		Description: "atoll events from nodes and hubs",
		Subjects:    []string{wire.SubjectEvents + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      MaxAge,
		MaxBytes:    MaxBytes,
		Duplicates:  DuplicateWindow,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open event stream: %w", err)
	}
	return &Log{js: js, stream: s}, nil
}

// Publish stores one of the hub's events, about ev.Node, deduplicated by
// ev.ID (so several hubs reporting the same thing store it once).
func (l *Log) Publish(ctx context.Context, ev wire.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	subj := wire.SubjectEvents + HubToken
	if ev.Node != "" {
		subj += "." + ev.Node
	}
	if _, err := l.js.Publish(ctx, subj, b, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	return nil
}

// LastFromNode returns the id of the last event the stream holds from
// node itself ("" when none): what a reconnecting agent may skip, because
// its acknowledgement may have been lost with the link.
func (l *Log) LastFromNode(ctx context.Context, node string) (string, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, wire.SubjectEvents+node)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("last event of %s: %w", node, err)
	}
	var ev wire.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return "", fmt.Errorf("last event of %s: %w", node, err)
	}
	return ev.ID, nil
}

// Query selects events.
type Query struct {
	// Node limits the answer to one node's events and the hub's events
	// about it; empty means all.
	Node string
	// Since selects events the stream stored at or after it. Zero means
	// the latest Limit events.
	Since time.Time
	// Limit is the most events to return (required, > 0).
	Limit int
}

func (q Query) filters() []string {
	if q.Node == "" {
		return []string{wire.SubjectEvents + ">"}
	}
	return []string{wire.SubjectEvents + q.Node, wire.SubjectEvents + HubToken + "." + q.Node}
}

// Find returns the events q selects, oldest first.
func (l *Log) Find(ctx context.Context, q Query) ([]wire.Event, error) {
	msgs, err := streamq.Read(ctx, l.stream, streamq.Query{Filters: q.filters(), Since: q.Since, Limit: q.Limit})
	if err != nil {
		return nil, fmt.Errorf("find events: %w", err)
	}
	out := make([]wire.Event, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decode(m))
	}
	return out, nil
}

// decode reads a stored event; a message that is not one is returned as
// TypeInvalid rather than dropped, so that nothing disappears silently.
func decode(m jetstream.Msg) wire.Event {
	var ev wire.Event
	node := strings.TrimPrefix(m.Subject(), wire.SubjectEvents)
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		ev = wire.Event{Type: TypeInvalid, Message: fmt.Sprintf("undecodable event on %s: %v", m.Subject(), err)}
		if md, err := m.Metadata(); err == nil {
			ev.Time = md.Timestamp
			ev.ID = fmt.Sprintf("stream-seq-%d", md.Sequence.Stream)
		}
	}
	if ev.Node == "" && !strings.HasPrefix(node, HubToken) {
		ev.Node = node
	}
	return ev
}
