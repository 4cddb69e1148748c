// Package telemetry is the hub's side of store-and-forward: it keeps the
// records nodes forward (wire.TelemetryBatch) in the JetStream stream
// wire.TelemetryStream, each record once, and reads them back for the API.
//
// # Once, even days later
//
// A record is published on atoll.telemetry.<node>.<subject> with the
// Nats-Msg-Id <node>/<epoch>/<seq>, so the stream drops a copy sent again
// within its duplicate window. Beyond the window a high-water mark decides:
// the KV bucket Bucket holds, per node, the highest sequence stored of its
// current epoch (and of the few epochs before it). Store skips the records
// at or below the mark, publishes the rest in order, waits for every
// acknowledgement, and only then raises the mark, with compare-and-set.
// A hub that stops between publishing and raising the mark leaves records
// the mark does not count; the next Store finds them from the node's last
// record in the stream (its headers), so they are not stored again even
// past the duplicate window. Several hubs storing the same batch at once
// publish the same ids, which the stream deduplicates, and raise the mark
// to the same value; the mark only grows.
//
// # Gaps and refusals
//
// Records at or below the mark are skipped. A batch that starts past
// mark+1, or has a gap inside, is stored as it is: the node dropped
// records under its disk budget and reports the drop itself. (A node sends
// one batch at a time and waits for its acknowledgement, so a gap is never
// an earlier batch overtaken by a later one.)
//
// A batch is refused whole, nothing of it stored, when its node is not a
// single subject token, its epoch is empty or not made of letters, digits,
// '-' and '_', its sequence numbers do not grow, a record's subject is not a
// literal NATS subject (non-empty tokens, no wildcards, no white space), or
// a record is larger than the NATS server accepts in a message or than the
// stream's MaxBytes. Sending it again cannot
// succeed; the agent must not accept such records in the first place.
//
// # Schema
//
//	stream ATOLL_TELEMETRY   atoll.telemetry.<node>.<subject>   record data, headers
//	                         Atoll-Node, Atoll-Epoch, Atoll-Seq, Atoll-Time (RFC 3339)
//	bucket atoll-telemetry   <node> → mark {epoch, stored, earlier: [{epoch, stored}]}
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/subject"
	"atoll.dev/atoll/internal/wire"
)

// Defaults of Config.
const (
	// DefaultMaxAge is how long records are kept.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultMaxBytes bounds the stream; the oldest records go first.
	DefaultMaxBytes = 1 << 30
	// DefaultDuplicateWindow is how long the stream remembers record ids.
	DefaultDuplicateWindow = 10 * time.Minute
)

// Bucket is the KV bucket of the high-water marks.
const Bucket = "atoll-telemetry"

// maxEarlier bounds the earlier epochs a mark remembers: a batch of an
// epoch a node left is then still stored once, should it arrive late.
const maxEarlier = 8

// publishWindow bounds the publishes awaiting their acknowledgement in
// one Store, below the client's limit of pending asynchronous publishes
// even with several Stores at once.
const publishWindow = 128

// ErrInvalid marks a query that is wrong (a bad node or subject filter).
var ErrInvalid = errors.New("invalid telemetry query")

// Config tunes the stream.
type Config struct {
	// Replicas for a clustered JetStream; 0 means 1.
	Replicas int
	// MaxAge is how long records are kept; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// MaxBytes bounds the stream, the oldest records dropped first; 0
	// means DefaultMaxBytes.
	MaxBytes int64
	// DuplicateWindow is how long the stream remembers record ids; 0
	// means DefaultDuplicateWindow. It is at most MaxAge.
	DuplicateWindow time.Duration
}

// Log is the telemetry stream and its high-water marks.
type Log struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	marks    *intent.Table[mark]
	maxBytes int64 // the stream's
}

// mark is what the hub holds of one node's records.
type mark struct {
	epochMark
	// Earlier are the node's previous epochs, most recent first.
	Earlier []epochMark `json:"earlier,omitempty"`
}

type epochMark struct {
	Epoch  string `json:"epoch"`
	Stored uint64 `json:"stored"`
}

// stored is the mark of epoch (0 when unknown).
func (m mark) stored(epoch string) uint64 {
	if m.Epoch == epoch {
		return m.Stored
	}
	for _, e := range m.Earlier {
		if e.Epoch == epoch {
			return e.Stored
		}
	}
	return 0
}

// raise returns m with epoch's mark at least stored, and whether that
// changed it. An epoch m does not know becomes the current one.
func (m mark) raise(epoch string, stored uint64) (mark, bool) {
	if m.Epoch == epoch {
		if stored <= m.Stored {
			return m, false
		}
		m.Stored = stored
		return m, true
	}
	m.Earlier = slices.Clone(m.Earlier)
	for i, e := range m.Earlier {
		if e.Epoch == epoch {
			if stored <= e.Stored {
				return m, false
			}
			m.Earlier[i].Stored = stored
			return m, true
		}
	}
	if m.Epoch != "" {
		m.Earlier = slices.Insert(m.Earlier, 0, m.epochMark)
		m.Earlier = m.Earlier[:min(len(m.Earlier), maxEarlier)]
	}
	m.epochMark = epochMark{Epoch: epoch, Stored: stored}
	return m, true
}

// ack answers a batch of epoch: the mark of epoch if the hub knows it,
// else the node's current one (empty when the hub holds nothing).
func (m mark) ack(epoch string) wire.TelemetryAck {
	if s := m.stored(epoch); s > 0 {
		return wire.TelemetryAck{Epoch: epoch, Stored: s}
	}
	return wire.TelemetryAck{Epoch: m.Epoch, Stored: m.Stored}
}

// Open creates the stream and the bucket, or updates the stream's limits
// to cfg's.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	if cfg.MaxAge < 0 || cfg.MaxBytes < 0 || cfg.DuplicateWindow < 0 {
		return nil, errors.New("open telemetry: negative limit")
	}
	maxAge, maxBytes := cmp.Or(cfg.MaxAge, DefaultMaxAge), cmp.Or(cfg.MaxBytes, DefaultMaxBytes)
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        wire.TelemetryStream,
		Description: "atoll telemetry forwarded by nodes",
		Subjects:    []string{wire.TelemetrySubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Duplicates:  min(cmp.Or(cfg.DuplicateWindow, DefaultDuplicateWindow), maxAge),
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open telemetry stream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "atoll telemetry: what the hub holds of each node's records",
		History: 1, Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open telemetry bucket: %w", err)
	}
	return &Log{js: js, stream: s, marks: intent.NewTable[mark](kv, "telemetry mark"), maxBytes: maxBytes}, nil
}

// Store keeps b's records that the hub does not hold yet, in order, and
// says how far it now holds b.Node's records. A batch with no records only
// asks for that. Errors are in the acknowledgement (wire.TelemetryAck).
func (l *Log) Store(ctx context.Context, b wire.TelemetryBatch) wire.TelemetryAck {
	if err := l.check(b); err != nil {
		return wire.TelemetryAck{Error: fmt.Sprintf("telemetry batch of %s refused: %v", b.Node, err)}
	}
	cur, err := l.marks.Get(ctx, b.Node)
	if err != nil && !errors.Is(err, intent.ErrNotFound) {
		return failed(b, err)
	}
	if len(b.Records) == 0 {
		return cur.Value.ack(b.Epoch)
	}
	held := cur.Value.stored(b.Epoch)
	if last := b.Records[len(b.Records)-1].Seq; last > held {
		// A hub that stopped after publishing may not have raised the mark.
		inStream, err := l.lastInStream(ctx, b.Node, b.Epoch)
		if err != nil {
			return failed(b, err)
		}
		held = max(held, inStream)
	}
	i, _ := slices.BinarySearchFunc(b.Records, held+1, func(r wire.TelemetryRecord, seq uint64) int { return cmp.Compare(r.Seq, seq) })
	stored, pubErr := l.publish(ctx, b.Node, b.Epoch, b.Records[i:])
	stored = max(stored, held)
	if stored == 0 {
		return failed(b, pubErr) // nothing held at all
	}
	e, _, err := l.marks.Update(ctx, b.Node, func(m mark, _ bool) (mark, bool, error) {
		next, changed := m.raise(b.Epoch, stored)
		return next, changed, nil
	})
	if err != nil {
		// The records are in the stream; the next Store finds them there.
		return failed(b, err)
	}
	return e.Value.ack(b.Epoch)
}

func failed(b wire.TelemetryBatch, err error) wire.TelemetryAck {
	return wire.TelemetryAck{Error: fmt.Sprintf("store telemetry of %s (epoch %s): %v", b.Node, b.Epoch, err)}
}

// check refuses a batch that cannot be stored as it is.
func (l *Log) check(b wire.TelemetryBatch) error {
	if subject.Check(b.Node, false) != nil || strings.Contains(b.Node, ".") {
		return fmt.Errorf("node %q is not a single subject token", b.Node)
	}
	if !validEpoch(b.Epoch) {
		return fmt.Errorf("epoch %q: want 1 to 64 letters, digits, '-' or '_'", b.Epoch)
	}
	// A record must fit in a NATS message and in the stream.
	limit := min(l.js.Conn().MaxPayload(), l.maxBytes)
	var prev uint64
	for i, r := range b.Records {
		if r.Seq <= prev {
			return fmt.Errorf("record %d: seq %d does not follow %d (sequence numbers grow from 1)", i, r.Seq, prev)
		}
		prev = r.Seq
		if err := subject.Check(r.Subject, false); err != nil {
			return fmt.Errorf("record %d (seq %d): subject %q %v", i, r.Seq, r.Subject, err)
		}
		// Headers and subject take a few hundred bytes more than the data.
		if size := int64(len(r.Data)) + 512 + int64(len(r.Subject)); size > limit {
			return fmt.Errorf("record %d (seq %d): %d bytes, more than the hub can store in one message (%d)", i, r.Seq, len(r.Data), limit)
		}
	}
	return nil
}

func validEpoch(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// publish stores recs in order and returns the highest Seq up to which
// every one of them is acknowledged (0 when none is), with the error that
// stopped it.
func (l *Log) publish(ctx context.Context, node, epoch string, recs []wire.TelemetryRecord) (uint64, error) {
	var stored uint64
	for len(recs) > 0 {
		n := min(len(recs), publishWindow)
		acks := make([]jetstream.PubAckFuture, 0, n)
		var err error
		for _, r := range recs[:n] {
			var f jetstream.PubAckFuture
			if f, err = l.js.PublishMsgAsync(message(node, epoch, r)); err != nil {
				break
			}
			acks = append(acks, f)
		}
		for i, f := range acks {
			select {
			case <-f.Ok():
				stored = recs[i].Seq // and every record before it
			case e := <-f.Err():
				return stored, e
			case <-ctx.Done():
				return stored, ctx.Err()
			}
		}
		if err != nil {
			return stored, err
		}
		recs = recs[n:]
	}
	return stored, nil
}

// message is r as stored.
func message(node, epoch string, r wire.TelemetryRecord) *nats.Msg {
	m := nats.NewMsg(wire.TelemetrySubjectPrefix + node + "." + r.Subject)
	m.Data = r.Data
	seq := strconv.FormatUint(r.Seq, 10)
	m.Header.Set(jetstream.MsgIDHeader, node+"/"+epoch+"/"+seq)
	m.Header.Set(wire.HeaderNode, node)
	m.Header.Set(wire.HeaderEpoch, epoch)
	m.Header.Set(wire.HeaderSeq, seq)
	m.Header.Set(wire.HeaderTime, r.Time.UTC().Format(time.RFC3339Nano))
	return m
}

// lastInStream is the Seq of node's last record in the stream when it is
// of epoch, else 0.
func (l *Log) lastInStream(ctx context.Context, node, epoch string) (uint64, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, wire.TelemetrySubjectPrefix+node+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last record of %s: %w", node, err)
	}
	if m.Header.Get(wire.HeaderEpoch) != epoch {
		return 0, nil
	}
	seq, _ := strconv.ParseUint(m.Header.Get(wire.HeaderSeq), 10, 64)
	return seq, nil
}
