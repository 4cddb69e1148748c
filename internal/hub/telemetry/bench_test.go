package telemetry_test

import (
	"fmt"
	"testing"

	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/telemetry"
	"atoll.dev/atoll/internal/wire"
)

// BenchmarkStore stores batches of 100 records of 64 bytes from one node:
// what one hub stores per second, in an empty stream and in one that
// already holds 100 records (10 subjects) of each of 1,000 other nodes,
// among which Store finds the node's last record.
func BenchmarkStore(b *testing.B) {
	b.Run("empty", func(b *testing.B) { benchStore(b, 0) })
	b.Run("others=1000", func(b *testing.B) { benchStore(b, 1000) })
}

func benchStore(b *testing.B, others int) {
	l := filled(b, others)
	ctx := hubtest.Context(b)
	data := make([]byte, 64)
	b.ResetTimer()
	seq := uint64(0)
	for b.Loop() {
		bt := wire.TelemetryBatch{Node: "n1", Epoch: "e1"}
		for range 100 {
			seq++
			bt.Records = append(bt.Records, wire.TelemetryRecord{Seq: seq, Subject: "sensors.temp", Data: data})
		}
		if ack := l.Store(ctx, bt); ack.Error != "" || ack.Stored != seq {
			b.Fatalf("ack = %+v", ack)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "records/s")
}

// filled is a telemetry log holding 100 records (10 subjects) of each of
// nodes nodes, other-0, other-1, ...
func filled(b *testing.B, nodes int) *telemetry.Log {
	b.Helper()
	_, js := hubtest.Connect(b, hubtest.NATS(b, "").ClientURL())
	ctx := hubtest.Context(b)
	l, err := telemetry.Open(ctx, js, telemetry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	for n := range nodes {
		bt := wire.TelemetryBatch{Node: fmt.Sprintf("other-%d", n), Epoch: "e1"}
		for i := range 100 {
			bt.Records = append(bt.Records, wire.TelemetryRecord{Seq: uint64(i + 1), Subject: fmt.Sprintf("s.%d", i%10), Data: make([]byte, 16)})
		}
		if ack := l.Store(ctx, bt); ack.Error != "" {
			b.Fatal(ack.Error)
		}
	}
	return l
}

// BenchmarkFind reads the latest 100 records (what GET /v1/telemetry
// does by default) from a stream of 100,000, of every node and of one
// node's subject, and the next 1,000 from a cursor (one poll of tail -f).
func BenchmarkFind(b *testing.B) {
	l := filled(b, 1000)
	for _, tc := range []struct {
		name string
		q    telemetry.Query
	}{
		{"latest100", telemetry.Query{Limit: 100}},
		{"latest100-node-subject", telemetry.Query{Node: "other-500", Subject: "s.3", Limit: 100}},
		{"from-cursor-1000", telemetry.Query{From: 50000, Limit: 1000}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := l.Find(hubtest.Context(b), tc.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
