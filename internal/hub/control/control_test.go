package control_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// link is a fake control.Link that records notifies and answers logs
// requests with logs.
type link struct {
	mu       sync.Mutex
	notifies []wire.Notify
	logs     func(ctx context.Context) (wire.LogsReply, error)
}

func (l *link) Notify(_ string, n wire.Notify) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notifies = append(l.notifies, n)
	return nil
}

func (l *link) RequestLogs(ctx context.Context, _ string, _ wire.LogsRequest) (wire.LogsReply, error) {
	return l.logs(ctx)
}

func (l *link) AnnounceSeen(string, fleet.Session) error { return nil }

func (l *link) revisions() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, n := range l.notifies {
		out = append(out, n.PlanRevision)
	}
	return out
}

type env struct {
	ctl   *control.Controller
	store *intent.Store
	link  *link
	clock *hubtest.Clock
}

func newEnv(t *testing.T, url string, logsTimeout time.Duration) *env {
	return newEnvLog(t, url, logsTimeout, nil)
}

func newEnvLog(t *testing.T, url string, logsTimeout time.Duration, log *slog.Logger) *env {
	t.Helper()
	return newEnvEvents(t, url, logsTimeout, log, nil)
}

// newEnvEvents is newEnvLog with the event log wrapped by wrap (when not
// nil), for a test to watch what the controller publishes.
func newEnvEvents(t *testing.T, url string, logsTimeout time.Duration, log *slog.Logger, wrap func(control.EventLog) control.EventLog) *env {
	t.Helper()
	ctx := hubtest.Context(t)
	_, js := hubtest.Connect(t, url)
	store, err := intent.Open(ctx, js, intent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	evlog, err := events.Open(ctx, js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var evs control.EventLog = evlog
	if wrap != nil {
		evs = wrap(evlog)
	}
	c := hubtest.NewClock(t0)
	l := &link{}
	ctl := control.New(control.Config{Store: store, Fleet: fleet.New(c, 0), Events: evs, Link: l,
		Clock: c, HLC: hlc.New(c, hlc.Timestamp{}), LogsTimeout: logsTimeout, Logger: log})
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &env{ctl: ctl, store: store, link: l, clock: c}
}

func workload(name string, nodes ...string) manifest.Workload {
	return manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: name},
		Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeExec,
			Exec: &manifest.ExecSpec{Command: []string{"/bin/" + name}}, Placement: manifest.Placement{Nodes: nodes}}}
}

func TestController_NotifyOnlyOnChange(t *testing.T) {
	e := newEnv(t, hubtest.NATS(t, "").ClientURL(), 0)
	ctx := hubtest.Context(t)
	if _, err := e.ctl.Apply(ctx, []manifest.Workload{workload("a", "n1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.Apply(ctx, []manifest.Workload{workload("a", "n1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.Apply(ctx, []manifest.Workload{workload("b", "n1")}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.link.revisions()); got != "[1 2]" {
		t.Fatalf("notified revisions = %s, want [1 2]: one per change, none for a no-op", got)
	}
}

// TestController_StartFinishesPlanning: a workload stored by a hub that
// stopped before planning gets its plans when the next hub starts.
func TestController_StartFinishesPlanning(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	first := newEnv(t, url, 0)
	ctx := hubtest.Context(t)
	ws := []manifest.Workload{workload("orphan", "n7")}
	if err := manifest.Normalize(ws); err != nil {
		t.Fatal(err)
	}
	if _, err := first.store.Workloads.Put(ctx, "orphan", intent.Workload{Manifest: ws[0], Stamp: hlc.Timestamp{Wall: 1}}, 0); err != nil {
		t.Fatal(err)
	}
	second := newEnv(t, url, 0)
	p, err := second.store.Plans.Get(ctx, "n7")
	if err != nil || p.Value.Revision != 1 || len(p.Value.Workloads) != 1 {
		t.Fatalf("plan of n7 after start = %+v, %v", p.Value, err)
	}
}

// TestController_ConcurrentPlanning has two controllers on one store
// apply at once; the plan's revisions stay consecutive, each a change.
func TestController_ConcurrentPlanning(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	var logs atolltest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	es := []*env{newEnvLog(t, url, 0, log), newEnvLog(t, url, 0, log)}
	ctx := hubtest.Context(t)
	// Each controller applies its ten workloads one after the other, both
	// at once, so that their planning interleaves.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for k, e := range es {
		wg.Go(func() {
			for i := range 10 {
				_, err := e.ctl.Apply(ctx, []manifest.Workload{workload(fmt.Sprintf("w%d-%02d", k, i), "n1")})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := es[0].store.Plans.Get(ctx, "n1")
	if err != nil || len(p.Value.Workloads) != 20 {
		t.Fatalf("final plan has %d workloads (%v), want 20", len(p.Value.Workloads), err)
	}
	hist, err := es[0].store.Plans.History(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Value.Revision != hist[i-1].Value.Revision+1 {
			t.Fatalf("revisions %d then %d", hist[i-1].Value.Revision, hist[i].Value.Revision)
		}
	}
	// Every notify names a revision that was written, and none twice.
	seen := map[uint64]bool{}
	for _, e := range es {
		for _, r := range e.link.revisions() {
			if seen[r] || r > p.Value.Revision {
				t.Fatalf("revision %d notified twice or never written (last %d)", r, p.Value.Revision)
			}
			seen[r] = true
		}
	}
	if uint64(len(seen)) != p.Value.Revision {
		t.Fatalf("%d notifies for %d revisions", len(seen), p.Value.Revision)
	}
	t.Logf("%d revisions, %d compare-and-set conflicts resolved", p.Value.Revision,
		strings.Count(logs.String(), "planning again"))
}

func TestController_LogsTimeout(t *testing.T) {
	e := newEnv(t, hubtest.NATS(t, "").ClientURL(), 50*time.Millisecond)
	ctx := hubtest.Context(t)
	e.link.logs = func(ctx context.Context) (wire.LogsReply, error) {
		<-ctx.Done()
		return wire.LogsReply{}, ctx.Err()
	}
	if r := e.ctl.Hello(ctx, wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: "n1"}); r.Error != "" {
		t.Fatal(r.Error)
	}
	start := time.Now()
	_, err := e.ctl.Logs(ctx, "n1", "web", 0)
	if !errors.Is(err, api.ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("logs from a silent agent = %v after %v, want a timeout after 50ms", err, time.Since(start))
	}
}

func TestController_StatusFromUnknownNodeDropped(t *testing.T) {
	e := newEnv(t, hubtest.NATS(t, "").ClientURL(), 0)
	ctx := hubtest.Context(t)
	e.ctl.Status(ctx, wire.Status{Node: "stranger", Digest: "d"})
	if _, err := e.store.Statuses.Get(ctx, "stranger"); !errors.Is(err, intent.ErrNotFound) {
		t.Fatalf("status of a node that never said hello was stored: %v", err)
	}
	if _, err := e.store.Nodes.Get(ctx, "stranger"); !errors.Is(err, intent.ErrNotFound) {
		t.Fatalf("a status created a node record: %v", err)
	}
}

// TestController_ShortAbsenceIsRecorded: a node back before the sweep
// noticed its silence still gets its node-disconnected event, before the
// node-connected one.
func TestController_ShortAbsenceIsRecorded(t *testing.T) {
	e := newEnv(t, hubtest.NATS(t, "").ClientURL(), 0)
	ctx := hubtest.Context(t)
	e.ctl.Hello(ctx, wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: "n1"})
	e.ctl.Heartbeat(ctx, wire.Heartbeat{Node: "n1"})
	e.clock.Advance(wire.DisconnectedAfter + time.Second) // no Sweep runs
	e.ctl.Heartbeat(ctx, wire.Heartbeat{Node: "n1"})
	var types []string
	atolltest.WaitFor(t, 10*time.Second, func() error {
		evs, err := e.ctl.Events(ctx, api.EventQuery{Node: "n1", Limit: 10})
		if err != nil {
			return err
		}
		types = types[:0]
		for _, ev := range evs {
			types = append(types, ev.Type)
		}
		if len(types) < 3 {
			return fmt.Errorf("events %v", types)
		}
		return nil
	})
	want := []string{events.TypeNodeConnected, events.TypeNodeDisconnected, events.TypeNodeConnected}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
}

// countingLog counts the events published by id.
type countingLog struct {
	control.EventLog
	mu        sync.Mutex
	published map[string]int
}

func (l *countingLog) Publish(ctx context.Context, ev wire.Event) error {
	l.mu.Lock()
	l.published[ev.ID]++
	l.mu.Unlock()
	return l.EventLog.Publish(ctx, ev)
}

// TestController_LongAbsenceRecordedOnce: a node back after the sweep
// recorded its silence is not recorded silent again (the stream's
// duplicate window may be long past).
func TestController_LongAbsenceRecordedOnce(t *testing.T) {
	counts := &countingLog{published: map[string]int{}}
	e := newEnvEvents(t, hubtest.NATS(t, "").ClientURL(), 0, nil, func(l control.EventLog) control.EventLog {
		counts.EventLog = l
		return counts
	})
	ctx := hubtest.Context(t)
	e.ctl.Hello(ctx, wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: "n1"})
	e.ctl.Heartbeat(ctx, wire.Heartbeat{Node: "n1"})
	e.clock.Advance(wire.DisconnectedAfter + time.Second)
	e.ctl.Sweep(ctx)
	e.clock.Advance(time.Hour)
	e.ctl.Heartbeat(ctx, wire.Heartbeat{Node: "n1"})
	counts.mu.Lock()
	defer counts.mu.Unlock()
	disconnected := 0
	for id, n := range counts.published {
		if strings.Contains(id, events.TypeNodeDisconnected) {
			disconnected++
			if n != 1 {
				t.Errorf("event %s published %d times, want once", id, n)
			}
		}
	}
	if disconnected != 1 {
		t.Errorf("%d node-disconnected events, want 1: %v", disconnected, counts.published)
	}
}
