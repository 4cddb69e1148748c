package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/streamq"
	"atoll.dev/atoll/internal/subject"
	"atoll.dev/atoll/internal/wire"
)

// Record is one stored record.
type Record struct {
	Node string
	// Subject is the workload's subject, without the stream's prefix and
	// the node.
	Subject string
	Epoch   string
	Seq     uint64
	// Time is when the node accepted the record.
	Time time.Time
	Data []byte
	// StreamSeq is the record's sequence in the stream: a cursor for
	// Query.From.
	StreamSeq uint64
}

// Query selects records.
type Query struct {
	// Node is one node's name; empty means every node.
	Node string
	// Subject is a subject or a pattern ("sensors.>"); empty means every
	// subject.
	Subject string
	// From is the first stream sequence to return; 0 means the latest
	// Limit records.
	From uint64
	// Limit is the most records to return (required, > 0).
	Limit int
}

// filter is the stream subject q selects, or an error wrapping ErrInvalid.
func (q Query) filter() (string, error) {
	if q.Node == "" && q.Subject == "" {
		// The whole stream: a filter the server need not match subject
		// by subject.
		return wire.TelemetrySubjectPrefix + ">", nil
	}
	node, subj := "*", ">"
	if q.Node != "" {
		if subject.Check(q.Node, false) != nil || strings.Contains(q.Node, ".") {
			return "", fmt.Errorf("%w: node %q is not a node name", ErrInvalid, q.Node)
		}
		node = q.Node
	}
	if q.Subject != "" {
		if err := subject.Check(q.Subject, true); err != nil {
			return "", fmt.Errorf("%w: subject %q %v", ErrInvalid, q.Subject, err)
		}
		subj = q.Subject
	}
	return wire.TelemetrySubjectPrefix + node + "." + subj, nil
}

// Find returns the records q selects, oldest first (in the order the
// stream stored them).
func (l *Log) Find(ctx context.Context, q Query) ([]Record, error) {
	f, err := q.filter()
	if err != nil {
		return nil, err
	}
	msgs, err := streamq.Read(ctx, l.stream, streamq.Query{Filters: []string{f}, From: q.From, Limit: q.Limit})
	if err != nil {
		return nil, fmt.Errorf("find telemetry: %w", err)
	}
	out := make([]Record, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decode(m))
	}
	return out, nil
}

// decode reads a stored message. One published on the stream's subjects
// by something other than a hub lacks the headers: it is returned with
// what its subject and metadata say.
func decode(m jetstream.Msg) Record {
	rest := strings.TrimPrefix(m.Subject(), wire.TelemetrySubjectPrefix)
	node, subj, _ := strings.Cut(rest, ".")
	h := m.Headers()
	r := Record{Node: node, Subject: subj, Epoch: h.Get(wire.HeaderEpoch), Data: m.Data()}
	r.Seq, _ = strconv.ParseUint(h.Get(wire.HeaderSeq), 10, 64)
	r.Time, _ = time.Parse(time.RFC3339Nano, h.Get(wire.HeaderTime))
	if md, err := m.Metadata(); err == nil {
		r.StreamSeq = md.Sequence.Stream
		if r.Time.IsZero() {
			r.Time = md.Timestamp
		}
	}
	return r
}
