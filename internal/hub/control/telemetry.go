package control

import (
	"context"
	"errors"
	"unicode/utf8"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/telemetry"
	"atoll.dev/atoll/internal/wire"
)

// TelemetryLog is the telemetry stream.
type TelemetryLog interface {
	Store(ctx context.Context, b wire.TelemetryBatch) wire.TelemetryAck
	Find(ctx context.Context, q telemetry.Query) ([]telemetry.Record, error)
}

// StoreTelemetry keeps a batch of records a node forwarded, once each.
func (c *Controller) StoreTelemetry(ctx context.Context, b wire.TelemetryBatch) wire.TelemetryAck {
	if c.telemetry == nil {
		return wire.TelemetryAck{Error: "this hub stores no telemetry"}
	}
	return c.telemetry.Store(ctx, b)
}

// Telemetry returns the records q selects, oldest first.
func (c *Controller) Telemetry(ctx context.Context, q api.TelemetryQuery) ([]api.TelemetryRecord, error) {
	if c.telemetry == nil {
		return nil, errors.New("this hub stores no telemetry")
	}
	tq := telemetry.Query{Node: q.Node, Subject: q.Subject, Limit: q.Limit}
	if q.After != nil {
		tq.From = *q.After + 1
	}
	recs, err := c.telemetry.Find(ctx, tq)
	if errors.Is(err, telemetry.ErrInvalid) {
		return nil, api.Errorf(api.ErrInvalid, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]api.TelemetryRecord, 0, len(recs))
	for _, r := range recs {
		ar := api.TelemetryRecord{Node: r.Node, Subject: r.Subject, Epoch: r.Epoch, Seq: r.Seq, Time: r.Time,
			Data: r.Data, StreamSeq: r.StreamSeq}
		if utf8.Valid(r.Data) {
			ar.Text = string(r.Data)
		}
		out = append(out, ar)
	}
	return out, nil
}
