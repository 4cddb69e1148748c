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
	_, js := hubtest.Connect(b, hubtest.NATS(b, "").ClientURL())
	l, err := telemetry.Open(hubtest.Context(b), js, telemetry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := hubtest.Context(b)
	for n := range others {
		bt := wire.TelemetryBatch{Node: fmt.Sprintf("other-%d", n), Epoch: "e1"}
		for i := range 100 {
			bt.Records = append(bt.Records, wire.TelemetryRecord{Seq: uint64(i + 1), Subject: fmt.Sprintf("s.%d", i%10), Data: make([]byte, 16)})
		}
		if ack := l.Store(ctx, bt); ack.Error != "" {
			b.Fatal(ack.Error)
		}
	}
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
