package audit_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/audit"
	"atoll.dev/atoll/internal/hub/hubtest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, cfg audit.Config) (*audit.Log, jetstream.JetStream) {
	t.Helper()
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	l, err := audit.Open(hubtest.Context(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

func record(t *testing.T, l *audit.Log, es ...api.AuditEntry) {
	t.Helper()
	for _, e := range es {
		if err := l.Record(hubtest.Context(t), e); err != nil {
			t.Fatal(err)
		}
	}
}

func ids(es []api.AuditEntry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s:%d", e.ID, e.Status))
	}
	return out
}

func TestOpen_StreamLimits(t *testing.T) {
	_, js := setup(t, audit.Config{})
	s, err := js.Stream(hubtest.Context(t), audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.Storage != jetstream.FileStorage || c.MaxAge != audit.DefaultMaxAge || c.MaxBytes != audit.DefaultMaxBytes ||
		c.Discard != jetstream.DiscardOld || !c.DenyDelete || !c.DenyPurge || !slices.Equal(c.Subjects, []string{"atoll.audit"}) {
		t.Fatalf("stream config = %+v", c)
	}

	// Limits given are applied to the existing stream.
	l, err := audit.Open(hubtest.Context(t), js, audit.Config{MaxAge: time.Hour, MaxBytes: 1 << 20})
	if err != nil || l == nil {
		t.Fatal(err)
	}
	info, err := s.Info(hubtest.Context(t))
	if err != nil || info.Config.MaxAge != time.Hour || info.Config.MaxBytes != 1<<20 {
		t.Fatalf("updated config = %+v, %v", info.Config, err)
	}
}

func TestList_MergesIntentAndOutcome(t *testing.T) {
	l, _ := setup(t, audit.Config{})
	a := api.AuditEntry{ID: "a", Time: t0, User: "alice", Method: "POST", Path: "/v1/workloads:apply"}
	b := api.AuditEntry{ID: "b", Time: t0.Add(time.Second), User: "bob", Method: "DELETE", Path: "/v1/workloads/web"}
	c := api.AuditEntry{ID: "c", Time: t0.Add(2 * time.Second), User: "carol", Method: "POST", Path: "/v1/tokens", Status: 403}
	aDone, bDone := a, b
	aDone.Status, bDone.Status = 201, 204
	// b starts after a and ends before it; c was refused (one record) and
	// d is still running (its intent alone).
	d := api.AuditEntry{ID: "d", Time: t0.Add(3 * time.Second), User: "dan", Method: "PUT"}
	record(t, l, a, b, bDone, c, aDone, d)

	got, err := l.List(hubtest.Context(t), api.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:201", "b:204", "c:403", "d:0"}; !slices.Equal(ids(got), want) {
		t.Errorf("List = %q; want %q (one entry a call, by time received)", ids(got), want)
	}
	if got[0].User != "alice" || got[0].Path != "/v1/workloads:apply" {
		t.Errorf("entry = %+v", got[0])
	}

	got, err = l.List(hubtest.Context(t), api.AuditQuery{Limit: 2})
	if want := []string{"c:403", "d:0"}; err != nil || !slices.Equal(ids(got), want) {
		t.Errorf("List limit 2 = %q, %v; want the newest, %q", ids(got), err, want)
	}
	got, err = l.List(hubtest.Context(t), api.AuditQuery{Since: t0.Add(time.Second), Limit: 10})
	if want := []string{"b:204", "c:403", "d:0"}; err != nil || !slices.Equal(ids(got), want) {
		t.Errorf("List since = %q, %v; want %q", ids(got), err, want)
	}
}

func TestList_Empty(t *testing.T) {
	l, _ := setup(t, audit.Config{})
	got, err := l.List(hubtest.Context(t), api.AuditQuery{Limit: 5})
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("List = %v, %v; want empty", got, err)
	}
	if _, err := l.List(hubtest.Context(t), api.AuditQuery{}); err == nil {
		t.Error("List without a limit: no error")
	}
}

func TestLog_RefusesDeletes(t *testing.T) {
	l, js := setup(t, audit.Config{})
	record(t, l, api.AuditEntry{ID: "a", Time: t0})
	s, err := js.Stream(hubtest.Context(t), audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(hubtest.Context(t), 1); err == nil {
		t.Error("deleting an audit record succeeded")
	}
	if err := s.Purge(hubtest.Context(t)); err == nil {
		t.Error("purging the audit stream succeeded")
	}
}
