// Package streamq reads messages back from a JetStream stream for the
// hub's queries, oldest first: the latest n that match subject filters, or
// the first n from a stream sequence or a time on. It creates a short-lived
// consumer per query and deletes it after.
package streamq

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Query selects messages of a stream.
type Query struct {
	// Filters are the subjects (wildcards allowed) a message must match
	// one of.
	Filters []string
	// From is the first stream sequence to read; Since, when From is 0,
	// the first time. With neither, the latest Limit messages.
	From  uint64
	Since time.Time
	// Limit is the most messages to return (required, > 0).
	Limit int
}

// Read returns the messages q selects that are in the stream now (it does
// not wait for new ones), oldest first; an empty, non-nil list when none.
func Read(ctx context.Context, s jetstream.Stream, q Query) ([]jetstream.Msg, error) {
	if q.Limit <= 0 {
		return nil, errors.New("read stream: limit must be positive")
	}
	cfg := consumer(q.Filters)
	switch {
	case q.From > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = q.From
	case !q.Since.IsZero():
		since := q.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	default:
		start, err := lastN(ctx, s, q.Filters, uint64(q.Limit))
		if err != nil {
			return nil, err
		}
		if start == 0 {
			return []jetstream.Msg{}, nil
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	return read(ctx, s, cfg, q.Limit)
}

// consumer is the configuration of a query's consumer: no acks, in
// memory, gone by itself a minute after its last use should deleting it
// fail.
func consumer(filters []string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		FilterSubjects:    filters,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	}
}

// read fetches up to limit of the messages cfg selects.
func read(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig, limit int) ([]jetstream.Msg, error) {
	c, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer deleteConsumer(s, c)
	n := min(uint64(limit), c.CachedInfo().NumPending)
	out := make([]jetstream.Msg, 0, n)
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(n)-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			break // the rest aged out meanwhile
		}
	}
	return out, nil
}

func deleteConsumer(s jetstream.Stream, c jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The consumer also goes by itself after InactiveThreshold.
	_ = s.DeleteConsumer(ctx, c.CachedInfo().Name)
}

// lastN returns the sequence from which the last n messages matching
// filters start (0 when there are none), by binary search on the count of
// matching messages from a sequence on, which the server computes.
func lastN(ctx context.Context, s jetstream.Stream, filters []string, n uint64) (uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, nil
	}
	pending := func(seq uint64) (uint64, error) {
		cfg := consumer(filters)
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq
		c, err := s.CreateConsumer(ctx, cfg)
		if err != nil {
			return 0, err
		}
		defer deleteConsumer(s, c)
		return c.CachedInfo().NumPending, nil
	}
	total, err := pending(first)
	if err != nil || total == 0 {
		return 0, err
	}
	if total <= n {
		return first, nil
	}
	// Invariant: pending(lo) >= n; find the largest such lo.
	lo, hi := first, last
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		p, err := pending(mid)
		if err != nil {
			return 0, err
		}
		if p >= n {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}
