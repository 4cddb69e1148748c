package events_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

func setup(t *testing.T) (*events.Log, jetstream.JetStream) {
	t.Helper()
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	l, err := events.Open(hubtest.Context(t), js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

// publish sends ev as an agent does: on its node's subject, deduplicated
// by its id.
func publish(t *testing.T, js jetstream.JetStream, node string, ev wire.Event) {
	t.Helper()
	b, _ := json.Marshal(ev)
	if _, err := js.Publish(hubtest.Context(t), wire.SubjectEvents+node, b, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatal(err)
	}
}

func ids(evs []wire.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestOpen_StreamLimits(t *testing.T) {
	_, js := setup(t)
	s, err := js.Stream(hubtest.Context(t), wire.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.Storage != jetstream.FileStorage || c.Duplicates < 2*time.Minute || c.MaxAge != events.MaxAge ||
		c.MaxBytes != events.MaxBytes || !reflect.DeepEqual(c.Subjects, []string{"atoll.events.>"}) {
		t.Fatalf("stream config = %+v", c)
	}
}

func TestFind(t *testing.T) {
	l, js := setup(t)
	ctx := hubtest.Context(t)
	t1 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 5; i++ {
		publish(t, js, "n1", wire.Event{Seq: uint64(i), ID: fmt.Sprintf("n1-%d", i), Time: t1, Type: "started"})
	}
	publish(t, js, "n2", wire.Event{Seq: 1, ID: "n2-1", Time: t1, Type: "started"})
	// An agent retrying a publish: stored once.
	publish(t, js, "n1", wire.Event{Seq: 5, ID: "n1-5", Time: t1, Type: "started"})
	if err := l.Publish(ctx, wire.Event{Node: "n1", ID: "hub-1", Type: events.TypeNodeDisconnected}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, wire.SubjectEvents+"n3", []byte("not json")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		q    events.Query
		want []string
	}{
		{"all", events.Query{Limit: 100}, []string{"n1-1", "n1-2", "n1-3", "n1-4", "n1-5", "n2-1", "hub-1", "stream-seq-8"}},
		{"last 3, oldest first", events.Query{Limit: 3}, []string{"n2-1", "hub-1", "stream-seq-8"}},
		{"node with hub events", events.Query{Node: "n1", Limit: 100}, []string{"n1-1", "n1-2", "n1-3", "n1-4", "n1-5", "hub-1"}},
		{"last 2 of a node", events.Query{Node: "n1", Limit: 2}, []string{"n1-5", "hub-1"}},
		{"last 1 of the other", events.Query{Node: "n2", Limit: 1}, []string{"n2-1"}},
		{"unknown node", events.Query{Node: "zz", Limit: 10}, []string{}},
		{"since the past, limited", events.Query{Node: "n1", Since: time.Now().Add(-time.Hour), Limit: 2}, []string{"n1-1", "n1-2"}},
		{"since the future", events.Query{Since: time.Now().Add(time.Hour), Limit: 10}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Find(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tc.want) {
				t.Fatalf("Find(%+v) = %v, want %v", tc.q, ids(got), tc.want)
			}
			for _, e := range got {
				if e.Node == "" {
					t.Fatalf("event %s has no node", e.ID)
				}
			}
		})
	}
	all, _ := l.Find(ctx, events.Query{Node: "n3", Limit: 1})
	if len(all) != 1 || all[0].Type != events.TypeInvalid || all[0].Node != "n3" {
		t.Fatalf("garbage message = %+v, want it shown as invalid, not dropped", all)
	}
}

func TestFind_EmptyStream(t *testing.T) {
	l, _ := setup(t)
	got, err := l.Find(hubtest.Context(t), events.Query{Limit: 10})
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Find on an empty stream = %#v, %v; want an empty list", got, err)
	}
}
