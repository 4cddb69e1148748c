package telemetry_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/telemetry"
	"atoll.dev/atoll/internal/wire"
)

var t0 = time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)

func open(t *testing.T, url string, cfg telemetry.Config) (*telemetry.Log, jetstream.JetStream) {
	t.Helper()
	_, js := hubtest.Connect(t, url)
	l, err := telemetry.Open(hubtest.Context(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

func setup(t *testing.T, cfg telemetry.Config) (*telemetry.Log, jetstream.JetStream) {
	t.Helper()
	return open(t, hubtest.NATS(t, "").ClientURL(), cfg)
}

// batch is node's records of epoch with sequence numbers seqs, on subject
// sensors.<seq mod 2>.
func batch(node, epoch string, seqs ...uint64) wire.TelemetryBatch {
	b := wire.TelemetryBatch{Node: node, Epoch: epoch}
	for _, s := range seqs {
		b.Records = append(b.Records, wire.TelemetryRecord{
			Seq: s, Subject: fmt.Sprintf("sensors.s%d", s%2), Time: t0.Add(time.Duration(s) * time.Second),
			Data: []byte(fmt.Sprintf("%s/%s/%d", node, epoch, s)),
		})
	}
	return b
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func store(t *testing.T, l *telemetry.Log, b wire.TelemetryBatch, want wire.TelemetryAck) {
	t.Helper()
	if got := l.Store(hubtest.Context(t), b); got != want {
		t.Fatalf("Store(%s %s, %d records) = %+v, want %+v", b.Node, b.Epoch, len(b.Records), got, want)
	}
}

// held lists the data of the records q selects, in stream order.
func held(t *testing.T, l *telemetry.Log, q telemetry.Query) []string {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 1000
	}
	rs, err := l.Find(hubtest.Context(t), q)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range rs {
		out = append(out, string(r.Data))
	}
	return out
}

func want(node, epoch string, seqs ...uint64) []string {
	out := []string{}
	for _, s := range seqs {
		out = append(out, fmt.Sprintf("%s/%s/%d", node, epoch, s))
	}
	return out
}

func check(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		for i, g := range got {
			if len(g) > 40 {
				got[i] = g[:40] + "..."
			}
		}
		t.Fatalf("stream holds %q,\nwant %q", got, want)
	}
}

func TestOpen_StreamLimits(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	_, js := open(t, url, telemetry.Config{})
	info := func() jetstream.StreamConfig {
		s, err := js.Stream(hubtest.Context(t), wire.TelemetryStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	c := info()
	if c.Storage != jetstream.FileStorage || c.Discard != jetstream.DiscardOld || c.MaxAge != telemetry.DefaultMaxAge ||
		c.MaxBytes != telemetry.DefaultMaxBytes || c.Duplicates != telemetry.DefaultDuplicateWindow ||
		!reflect.DeepEqual(c.Subjects, []string{"atoll.telemetry.>"}) {
		t.Fatalf("stream config = %+v", c)
	}
	// A hub started with other limits updates them; the window stays
	// within the age.
	open(t, url, telemetry.Config{MaxAge: time.Minute, MaxBytes: 1 << 20})
	if c := info(); c.MaxAge != time.Minute || c.MaxBytes != 1<<20 || c.Duplicates != time.Minute {
		t.Fatalf("updated stream config = %+v", c)
	}
	if _, err := telemetry.Open(hubtest.Context(t), js, telemetry.Config{MaxBytes: -1}); err == nil {
		t.Fatal("Open accepted a negative limit")
	}
}

func TestStore_Once(t *testing.T) {
	l, _ := setup(t, telemetry.Config{})
	// Nothing held yet: the acknowledgement names no epoch.
	store(t, l, batch("n1", "e1"), wire.TelemetryAck{})
	store(t, l, batch("n1", "e1", 1, 2, 3), wire.TelemetryAck{Epoch: "e1", Stored: 3})
	store(t, l, batch("n1", "e1", 1, 2, 3), wire.TelemetryAck{Epoch: "e1", Stored: 3})
	store(t, l, batch("n1", "e1", 2, 3, 4, 5), wire.TelemetryAck{Epoch: "e1", Stored: 5})
	store(t, l, batch("n1", "e1"), wire.TelemetryAck{Epoch: "e1", Stored: 5})
	check(t, held(t, l, telemetry.Query{}), want("n1", "e1", 1, 2, 3, 4, 5))

	rs, err := l.Find(hubtest.Context(t), telemetry.Query{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Node != "n1" || r.Subject != "sensors.s1" || r.Epoch != "e1" || r.Seq != 5 || !r.Time.Equal(t0.Add(5*time.Second)) || r.StreamSeq != 5 {
		t.Fatalf("record = %+v", r)
	}
}

// TestStore_OrderKept stores a large batch (several publish windows) and
// finds it in the node's order.
func TestStore_OrderKept(t *testing.T) {
	l, _ := setup(t, telemetry.Config{})
	store(t, l, batch("n1", "e1", seqs(1, 1000)...), wire.TelemetryAck{Epoch: "e1", Stored: 1000})
	check(t, held(t, l, telemetry.Query{}), want("n1", "e1", seqs(1, 1000)...))
}

// TestStore_AfterDuplicateWindow sends batches again once the stream has
// forgotten their ids, when the stream no longer holds the node's last
// record of that epoch: the high-water mark alone keeps them from being
// stored twice.
func TestStore_AfterDuplicateWindow(t *testing.T) {
	l, js := setup(t, telemetry.Config{DuplicateWindow: 100 * time.Millisecond})
	ctx := hubtest.Context(t)
	store(t, l, batch("n1", "e1", 1, 2, 3), wire.TelemetryAck{Epoch: "e1", Stored: 3})
	if ack, err := js.Publish(ctx, wire.TelemetrySubjectPrefix+"probe.x", nil, jetstream.WithMsgID("n1/e1/3")); err != nil || !ack.Duplicate {
		t.Fatalf("publish of a stored id = %+v, %v; want a duplicate", ack, err)
	}
	// The node's last record in the stream is of another epoch now.
	store(t, l, batch("n1", "e2", 1), wire.TelemetryAck{Epoch: "e2", Stored: 1})
	forgotten(t, js, "n1/e1/3")
	store(t, l, batch("n1", "e1", 1, 2, 3), wire.TelemetryAck{Epoch: "e1", Stored: 3})
	store(t, l, batch("n1", "e1", 3, 4), wire.TelemetryAck{Epoch: "e1", Stored: 4})
	check(t, held(t, l, telemetry.Query{Node: "n1"}), append(want("n1", "e1", 1, 2, 3), append(want("n1", "e2", 1), want("n1", "e1", 4)...)...))

	// The records aged out of the stream (MaxAge, MaxBytes).
	s, err := js.Stream(ctx, wire.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	forgotten(t, js, "n1/e2/1")
	store(t, l, batch("n1", "e2", 1), wire.TelemetryAck{Epoch: "e2", Stored: 1})
	store(t, l, batch("n1", "e1", 2, 3, 4, 5), wire.TelemetryAck{Epoch: "e1", Stored: 5})
	check(t, held(t, l, telemetry.Query{Node: "n1"}), want("n1", "e1", 5))
}

// forgotten waits until the stream no longer deduplicates id, which it
// stored, by publishing a probe with that id on another node's subject.
func forgotten(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		ack, err := js.Publish(hubtest.Context(t), wire.TelemetrySubjectPrefix+"probe.x", nil, jetstream.WithMsgID(id))
		if err != nil {
			return err
		}
		if ack.Duplicate {
			return errors.New("the stream still remembers the id")
		}
		return nil
	})
}

// TestStore_HubStoppedBeforeMark: a hub published records and stopped
// before raising the mark; past the duplicate window, the same batch is
// still stored once, because the stream's last record of the node counts.
func TestStore_HubStoppedBeforeMark(t *testing.T) {
	l, js := setup(t, telemetry.Config{DuplicateWindow: 100 * time.Millisecond})
	store(t, l, batch("n1", "e1", 1), wire.TelemetryAck{Epoch: "e1", Stored: 1})
	for _, r := range batch("n1", "e1", 2, 3).Records {
		m := nats.NewMsg(wire.TelemetrySubjectPrefix + "n1." + r.Subject)
		m.Data = r.Data
		m.Header.Set(wire.HeaderEpoch, "e1")
		m.Header.Set(wire.HeaderSeq, strconv.FormatUint(r.Seq, 10))
		if _, err := js.PublishMsg(hubtest.Context(t), m); err != nil {
			t.Fatal(err)
		}
	}
	forgotten(t, js, "n1/e1/1")
	store(t, l, batch("n1", "e1", 2, 3, 4), wire.TelemetryAck{Epoch: "e1", Stored: 4})
	check(t, held(t, l, telemetry.Query{Node: "n1"}), want("n1", "e1", 1, 2, 3, 4))
}

func TestStore_Gap(t *testing.T) {
	l, _ := setup(t, telemetry.Config{})
	store(t, l, batch("n1", "e1", 1, 2), wire.TelemetryAck{Epoch: "e1", Stored: 2})
	// The node dropped 3..6 under its disk budget.
	store(t, l, batch("n1", "e1", 7, 9), wire.TelemetryAck{Epoch: "e1", Stored: 9})
	store(t, l, batch("n1", "e1", 5, 6, 7, 8, 9), wire.TelemetryAck{Epoch: "e1", Stored: 9})
	check(t, held(t, l, telemetry.Query{}), want("n1", "e1", 1, 2, 7, 9))
}

func TestStore_NewEpoch(t *testing.T) {
	l, _ := setup(t, telemetry.Config{})
	store(t, l, batch("n1", "old", 1, 2, 3), wire.TelemetryAck{Epoch: "old", Stored: 3})
	// The node lost its data directory: a new outbox starts from 1. Until
	// it stores some, the hub answers with the epoch it holds.
	store(t, l, batch("n1", "new"), wire.TelemetryAck{Epoch: "old", Stored: 3})
	store(t, l, batch("n1", "new", 1, 2), wire.TelemetryAck{Epoch: "new", Stored: 2})
	store(t, l, batch("n1", "other"), wire.TelemetryAck{Epoch: "new", Stored: 2})
	// A late batch of the old epoch is stored once and leaves the current
	// epoch alone.
	store(t, l, batch("n1", "old", 3, 4), wire.TelemetryAck{Epoch: "old", Stored: 4})
	store(t, l, batch("n1", "old", 3, 4), wire.TelemetryAck{Epoch: "old", Stored: 4})
	store(t, l, batch("n1", "new", 2, 3), wire.TelemetryAck{Epoch: "new", Stored: 3})
	// Another node counts on its own.
	store(t, l, batch("n2", "new", 1), wire.TelemetryAck{Epoch: "new", Stored: 1})
	got := held(t, l, telemetry.Query{})
	check(t, got, append(append(append(want("n1", "old", 1, 2, 3), want("n1", "new", 1, 2)...),
		append(want("n1", "old", 4), want("n1", "new", 3)...)...), want("n2", "new", 1)...))
}

func TestStore_Refused(t *testing.T) {
	l, js := setup(t, telemetry.Config{})
	store(t, l, batch("n1", "e1", 1), wire.TelemetryAck{Epoch: "e1", Stored: 1})
	big := batch("n1", "e1", 2, 3)
	big.Records[1].Data = make([]byte, js.Conn().MaxPayload())
	for _, tc := range []struct {
		name string
		b    wire.TelemetryBatch
		msg  string
	}{
		{"wildcard", withSubject(batch("n1", "e1", 2, 3), "sensors.*"), `record 1 (seq 3): subject "sensors.*" has the wildcard`},
		{"tail wildcard", withSubject(batch("n1", "e1", 2, 3), ">"), `subject ">"`},
		{"empty token", withSubject(batch("n1", "e1", 2, 3), "sensors..t"), "empty token"},
		{"space", withSubject(batch("n1", "e1", 2, 3), "sensors.a b"), "white space"},
		{"empty subject", withSubject(batch("n1", "e1", 2, 3), ""), "empty"},
		{"seq not growing", batch("n1", "e1", 2, 4, 3), "record 2: seq 3 does not follow 4"},
		{"seq zero", batch("n1", "e1", 0, 1), "record 0: seq 0"},
		{"no epoch", batch("n1", "", 2), `epoch ""`},
		{"bad epoch", batch("n1", "a/b", 2), `epoch "a/b"`},
		{"bad node", batch("n1.x", "e1", 2), `node "n1.x"`},
		{"too large", big, fmt.Sprintf("record 1 (seq 3): %d bytes, more than the hub can store in one message (%d)", js.Conn().MaxPayload(), js.Conn().MaxPayload())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := l.Store(hubtest.Context(t), tc.b)
			if ack.Stored != 0 || !strings.Contains(ack.Error, tc.msg) || !strings.Contains(ack.Error, "refused") {
				t.Fatalf("ack = %+v, want an error with %q", ack, tc.msg)
			}
		})
	}
	check(t, held(t, l, telemetry.Query{}), want("n1", "e1", 1))
}

// TestStore_RefusedOverStreamBytes: a record larger than the stream may
// hold could never be stored; its batch is refused rather than retried.
func TestStore_RefusedOverStreamBytes(t *testing.T) {
	l, _ := setup(t, telemetry.Config{MaxBytes: 64 << 10})
	b := batch("n1", "e1", 1)
	b.Records[0].Data = make([]byte, 64<<10)
	if ack := l.Store(hubtest.Context(t), b); !strings.Contains(ack.Error, "record 0 (seq 1): 65536 bytes, more than the hub can store in one message (65536)") {
		t.Fatalf("ack = %+v", ack)
	}
	check(t, held(t, l, telemetry.Query{}), []string{})
}

// withSubject sets the subject of b's last record.
func withSubject(b wire.TelemetryBatch, s string) wire.TelemetryBatch {
	b.Records[len(b.Records)-1].Subject = s
	return b
}

// TestStore_SeveralHubs: hubs sharing one NATS store the same batches at
// once, as when an agent's request times out on one hub and goes to
// another; every record is stored once and the marks agree.
func TestStore_SeveralHubs(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	hubs := []*telemetry.Log{}
	for range 3 {
		l, _ := open(t, url, telemetry.Config{})
		hubs = append(hubs, l)
	}
	var wg sync.WaitGroup
	acks := make(chan wire.TelemetryAck, 100)
	for round := range uint64(10) {
		b := batch("n1", "e1", seqs(1, 20*(round+1))...)
		for _, l := range hubs {
			wg.Go(func() { acks <- l.Store(hubtest.Context(t), b) })
		}
		wg.Wait()
	}
	close(acks)
	for a := range acks {
		if a.Error != "" || a.Epoch != "e1" {
			t.Fatalf("ack = %+v", a)
		}
	}
	store(t, hubs[0], batch("n1", "e1"), wire.TelemetryAck{Epoch: "e1", Stored: 200})
	got := held(t, hubs[1], telemetry.Query{})
	if len(got) != 200 {
		t.Fatalf("stream holds %d records, want 200", len(got))
	}
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d] {
			t.Fatalf("%s stored twice", d)
		}
		seen[d] = true
	}
}

func TestFind(t *testing.T) {
	l, _ := setup(t, telemetry.Config{})
	store(t, l, batch("n1", "e1", 1, 2, 3, 4), wire.TelemetryAck{Epoch: "e1", Stored: 4})
	b := batch("n2", "e1", 1, 2)
	b.Records[1].Subject = "alarms.door"
	store(t, l, b, wire.TelemetryAck{Epoch: "e1", Stored: 2})
	for _, tc := range []struct {
		name string
		q    telemetry.Query
		want []string
	}{
		{"all", telemetry.Query{}, append(want("n1", "e1", 1, 2, 3, 4), want("n2", "e1", 1, 2)...)},
		{"latest 2", telemetry.Query{Limit: 2}, want("n2", "e1", 1, 2)},
		{"node", telemetry.Query{Node: "n1", Limit: 3}, want("n1", "e1", 2, 3, 4)},
		{"subject wildcard", telemetry.Query{Subject: "sensors.>"}, append(want("n1", "e1", 1, 2, 3, 4), want("n2", "e1", 1)...)},
		{"subject token wildcard", telemetry.Query{Subject: "*.s1"}, append(want("n1", "e1", 1, 3), want("n2", "e1", 1)...)},
		{"node and subject", telemetry.Query{Node: "n2", Subject: "alarms.door"}, want("n2", "e1", 2)},
		{"from a stream sequence", telemetry.Query{From: 4, Limit: 2}, append(want("n1", "e1", 4), want("n2", "e1", 1)...)},
		{"unknown node", telemetry.Query{Node: "n9"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, held(t, l, tc.q), tc.want)
		})
	}
	for _, q := range []telemetry.Query{{Node: "a.b"}, {Node: "*"}, {Subject: "a..b"}, {Subject: "a.>.b"}} {
		q.Limit = 1
		if _, err := l.Find(hubtest.Context(t), q); !errors.Is(err, telemetry.ErrInvalid) {
			t.Errorf("Find(%+v) = %v, want ErrInvalid", q, err)
		}
	}
}
