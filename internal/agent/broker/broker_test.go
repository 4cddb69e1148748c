package broker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/agent/broker"
	"atoll.dev/atoll/internal/atolltest"
)

func start(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := broker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// app is a workload's client: it publishes with JetStream acks, as an app
// that must not lose a reading does.
func app(t *testing.T, b *broker.Broker) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func publish(t *testing.T, js jetstream.JetStream, subj string, n int) {
	t.Helper()
	for i := range n {
		if _, err := js.Publish(context.Background(), subj, fmt.Appendf(nil, "reading %d", i)); err != nil {
			t.Fatalf("publish %d on %s: %v", i, subj, err)
		}
	}
}

func TestBroker_OutboxKeepsForwardedSubjectsInOrder(t *testing.T) {
	ctx := context.Background()
	b := start(t, broker.Config{DataDir: t.TempDir(), Name: "n1"})
	if err := b.SetSubjects(ctx, []string{"sensors.temp", "sensors.>"}); err != nil {
		t.Fatal(err)
	}
	nc, js := app(t, b)
	// Local pub/sub works for every subject, forwarded or not.
	local, err := nc.SubscribeSync("chat.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("chat.hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := local.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("local subscriber got %v, %v", m, err)
	}
	publish(t, js, "sensors.temp", 5)
	select {
	case <-b.Arrived():
	case <-time.After(5 * time.Second):
		t.Fatal("Arrived not signalled")
	}

	recs, dropped, err := b.Read(ctx, 0, 1<<20)
	if err != nil || dropped != 0 || len(recs) != 5 {
		t.Fatalf("Read = %d records, %d dropped, %v; want 5, 0", len(recs), dropped, err)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Subject != "sensors.temp" || string(r.Data) != fmt.Sprintf("reading %d", i) || r.Time.IsZero() {
			t.Errorf("record %d = %+v", i, r)
		}
	}
	// maxBytes bounds a read, but a read returns at least one record.
	if recs, _, _ := b.Read(ctx, 0, 1); len(recs) != 1 {
		t.Errorf("Read with maxBytes 1 = %d records, want 1", len(recs))
	}
	if err := b.Forwarded(ctx, 3); err != nil {
		t.Fatal(err)
	}
	recs, dropped, err = b.Read(ctx, 3, 1<<20)
	if err != nil || dropped != 0 || len(recs) != 2 || recs[0].Seq != 4 {
		t.Fatalf("after Forwarded(3): %d records from %v, %d dropped, %v", len(recs), recs, dropped, err)
	}
	if n, err := b.Pending(ctx); err != nil || n != 2 {
		t.Errorf("Pending = %d, %v; want 2", n, err)
	}
}

func TestBroker_OutboxSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := broker.Start(ctx, broker.Config{DataDir: dir, Listen: "127.0.0.1:0", Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSubjects(ctx, []string{"sensors.>"}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	publish(t, js, "sensors.a", 3)
	nc.Close()
	epoch := b.Epoch()
	b.Close()

	b = start(t, broker.Config{DataDir: dir, Name: "n1"})
	if b.Epoch() != epoch {
		t.Errorf("epoch %q after a restart, was %q", b.Epoch(), epoch)
	}
	recs, _, err := b.Read(ctx, 0, 1<<20)
	if err != nil || len(recs) != 3 {
		t.Fatalf("after a restart: %d records, %v; want 3", len(recs), err)
	}
	// The subjects stay captured until the agent sets them again.
	_, js2 := app(t, b)
	publish(t, js2, "sensors.b", 1)
}

func TestBroker_BudgetDropsOldestAndCountsThem(t *testing.T) {
	ctx := context.Background()
	b := start(t, broker.Config{DataDir: t.TempDir(), Name: "n1", MaxBytes: 32 << 10})
	if err := b.SetSubjects(ctx, []string{"sensors.>"}); err != nil {
		t.Fatal(err)
	}
	_, js := app(t, b)
	payload := make([]byte, 1000)
	for i := range 100 {
		if _, err := js.Publish(ctx, "sensors.big", payload); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	recs, dropped, err := b.Read(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 || len(recs) == 0 || recs[0].Seq != dropped+1 || recs[len(recs)-1].Seq != 100 {
		t.Fatalf("over budget: %d records from %d, %d dropped; want the newest, the oldest dropped", len(recs), recs[0].Seq, dropped)
	}
	if int(dropped)+len(recs) != 100 {
		t.Errorf("%d dropped + %d kept != 100 published", dropped, len(recs))
	}
}

func TestBroker_PartlyOverlappingSubjects(t *testing.T) {
	ctx := context.Background()
	b := start(t, broker.Config{DataDir: t.TempDir(), Name: "n1"})
	if err := b.SetSubjects(ctx, []string{"b.*.c", "b.x.*"}); err != nil {
		t.Fatalf("two partly overlapping patterns: %v", err)
	}
	_, js := app(t, b)
	publish(t, js, "b.x.c", 1)
	publish(t, js, "b.y.c", 1)
	publish(t, js, "b.x.d", 1)
	if recs, _, _ := b.Read(ctx, 0, 1<<20); len(recs) != 3 {
		t.Fatalf("%d records, want 3 (each stored once)", len(recs))
	}
	// Nothing forwarded any more: nothing captured, what is kept stays.
	if err := b.SetSubjects(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// No stream acknowledges it (no responders, or no answer at all while
	// the watch's unsubscribe is on its way).
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ack, err := js.Publish(pctx, "b.x.c", nil); err == nil {
		t.Errorf("publish on a subject no longer forwarded was stored: %+v", ack)
	}
	if recs, _, _ := b.Read(ctx, 0, 1<<20); len(recs) != 3 {
		t.Fatalf("%d records after the subjects went, want the 3 kept", len(recs))
	}
}

func TestBroker_MQTTPublishLandsInTheOutbox(t *testing.T) {
	ctx := context.Background()
	addr := fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t))
	b := start(t, broker.Config{DataDir: t.TempDir(), Name: "n1", MQTTListen: addr})
	if b.MQTTAddr() != addr {
		t.Fatalf("MQTTAddr = %q, want %q", b.MQTTAddr(), addr)
	}
	if err := b.SetSubjects(ctx, []string{"sensors.>"}); err != nil {
		t.Fatal(err)
	}
	mqttPublishQoS1(t, addr, "sensors/door", []byte("open"))
	atolltest.WaitFor(t, 10*time.Second, func() error {
		recs, _, err := b.Read(ctx, 0, 1<<20)
		if err != nil {
			return err
		}
		if len(recs) != 1 || recs[0].Subject != "sensors.door" || string(recs[0].Data) != "open" {
			return fmt.Errorf("outbox holds %+v", recs)
		}
		return nil
	})
}

// mqttPublishQoS1 connects as an MQTT 3.1.1 client, publishes one message
// at QoS 1 and waits for its PUBACK.
func mqttPublishQoS1(t *testing.T, addr, topic string, payload []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	packet := func(kind byte, body []byte) []byte { // bodies here stay under 128 bytes
		return append([]byte{kind, byte(len(body))}, body...)
	}
	connect := append(str("MQTT"), 4, 0x02, 0, 30) // level 4, clean session, keep-alive 30 s
	connect = append(connect, str("atoll-test")...)
	if _, err := conn.Write(packet(0x10, connect)); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	if _, err := readFull(conn, connack); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", connack, err)
	}
	pub := append(str(topic), 0, 1) // packet id 1
	pub = append(pub, payload...)
	if _, err := conn.Write(packet(0x32, pub)); err != nil {
		t.Fatal(err)
	}
	puback := make([]byte, 4)
	if _, err := readFull(conn, puback); err != nil || puback[0] != 0x40 || puback[3] != 1 {
		t.Fatalf("PUBACK %x, %v", puback, err)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestBroker_ForwardedPastTheEndMovesTheNextSequence(t *testing.T) {
	ctx := context.Background()
	b := start(t, broker.Config{DataDir: t.TempDir(), Name: "n1"})
	if err := b.SetSubjects(ctx, []string{"sensors.>"}); err != nil {
		t.Fatal(err)
	}
	_, js := app(t, b)
	publish(t, js, "sensors.a", 3)
	// The hub holds up to 10 (the outbox lost 4..10 in a power cut): the
	// next record must not reuse those numbers.
	if err := b.Forwarded(ctx, 10); err != nil {
		t.Fatal(err)
	}
	publish(t, js, "sensors.a", 1)
	recs, dropped, err := b.Read(ctx, 10, 1<<20)
	if err != nil || dropped != 0 || len(recs) != 1 || recs[0].Seq != 11 {
		t.Fatalf("after Forwarded(10) past the end: %+v, %d dropped, %v; want one record, seq 11", recs, dropped, err)
	}
}
