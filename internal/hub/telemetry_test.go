package hub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

// TestTelemetry_ForwardedOnceAndRead: an agent forwards a batch over NATS,
// twice (a lost acknowledgement); the hub stores it once, in the stream a
// user reads from NATS, and the API shows it.
func TestTelemetry_ForwardedOnceAndRead(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), TelemetryMaxAge: 48 * time.Hour, TelemetryMaxBytes: 1 << 20})
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	b := wire.TelemetryBatch{Node: "n1", Epoch: "e1", Records: []wire.TelemetryRecord{
		{Seq: 1, Subject: "sensors.temp", Time: t0, Data: []byte(`{"c":21.5}`)},
		{Seq: 2, Subject: "sensors.raw", Time: t0.Add(time.Second), Data: []byte{0xff, 0x00}},
	}}
	for range 2 {
		if ack := a.Forward(b); ack != (wire.TelemetryAck{Epoch: "e1", Stored: 2}) {
			t.Fatalf("ack = %+v", ack)
		}
	}
	if ack := a.Forward(wire.TelemetryBatch{Node: "n2", Epoch: "e1", Records: b.Records}); ack.Error == "" {
		t.Fatalf("a batch naming another node was acknowledged: %+v", ack)
	}

	var recs []api.TelemetryRecord
	h.get("/v1/telemetry?node=n1", &recs)
	if len(recs) != 2 || recs[0].Text != `{"c":21.5}` || recs[0].Subject != "sensors.temp" || recs[0].Seq != 1 ||
		!recs[0].Time.Equal(t0) || recs[1].Text != "" || string(recs[1].Data) != "\xff\x00" {
		t.Fatalf("records = %+v", recs)
	}
	h.get("/v1/telemetry?subject=sensors.temp", &recs)
	if len(recs) != 1 {
		t.Fatalf("records of sensors.temp = %+v", recs)
	}
	code, body := h.do("GET", "/v1/telemetry?subject=sensors..x", nil)
	if code != 400 || !strings.Contains(string(body), "empty token") {
		t.Fatalf("bad subject = %d %s", code, body)
	}

	// What a user consumes straight from NATS.
	_, js := hubtest.Connect(t, h.NATSURL())
	s, err := js.Stream(hubtest.Context(t), wire.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 48*time.Hour || c.MaxBytes != 1<<20 {
		t.Fatalf("stream limits = %v, %d", c.MaxAge, c.MaxBytes)
	}
	m, err := s.GetLastMsgForSubject(hubtest.Context(t), "atoll.telemetry.n1.sensors.temp")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(wire.HeaderNode) != "n1" || m.Header.Get(wire.HeaderEpoch) != "e1" || m.Header.Get(wire.HeaderSeq) != "1" ||
		m.Header.Get(wire.HeaderTime) != "2026-03-01T12:00:00Z" || m.Header.Get(jetstream.MsgIDHeader) != "n1/e1/1" {
		t.Fatalf("headers = %v", m.Header)
	}
}
