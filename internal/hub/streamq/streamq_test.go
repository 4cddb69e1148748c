package streamq_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/streamq"
)

func TestRead(t *testing.T) {
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := streamq.Read(ctx, s, streamq.Query{Limit: 5})
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("Read of an empty stream = %#v, %v; want an empty list", empty, err)
	}
	for i := 1; i <= 6; i++ {
		if _, err := js.Publish(ctx, fmt.Sprintf("t.%c.x", "ab"[i%2]), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		q    streamq.Query
		want string
	}{
		{"latest", streamq.Query{Limit: 4}, "3456"},
		{"latest, more than there are", streamq.Query{Limit: 100}, "123456"},
		{"latest of a filter", streamq.Query{Filters: []string{"t.a.>"}, Limit: 2}, "46"},
		{"two filters", streamq.Query{Filters: []string{"t.a.x", "t.b.x"}, Limit: 3}, "456"},
		{"from a sequence", streamq.Query{From: 2, Limit: 3}, "234"},
		{"from a sequence, filtered", streamq.Query{Filters: []string{"t.b.*"}, From: 2, Limit: 10}, "35"},
		{"from past the end", streamq.Query{From: 7, Limit: 3}, ""},
		{"since the past", streamq.Query{Since: time.Now().Add(-time.Hour), Limit: 2}, "12"},
		{"since the future", streamq.Query{Since: time.Now().Add(time.Hour), Limit: 2}, ""},
		{"no match", streamq.Query{Filters: []string{"t.c.>"}, Limit: 2}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := streamq.Read(ctx, s, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, m := range msgs {
				got += string(m.Data())
			}
			if got != tc.want {
				t.Fatalf("Read(%+v) = %q, want %q", tc.q, got, tc.want)
			}
		})
	}
	if _, err := streamq.Read(ctx, s, streamq.Query{}); err == nil {
		t.Fatal("Read without a limit succeeded")
	}
	// Every query's consumer is gone after it.
	info, err := s.Info(ctx)
	if err != nil || info.State.Consumers != 0 {
		t.Fatalf("%d consumers left, %v", info.State.Consumers, err)
	}
}
