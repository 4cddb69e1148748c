package nodesync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/nodesync"
	"atoll.dev/atoll/internal/wire"
)

// handler records what reaches it.
type handler struct {
	mu       sync.Mutex
	hellos   []wire.Hello
	statuses []wire.Status
	seen     map[string]fleet.Session
	batches  []wire.TelemetryBatch
	// hold, when set, keeps StoreTelemetry waiting until it is closed;
	// storing counts the calls waiting, most the largest count seen.
	hold          chan struct{}
	storing, most int
}

func (h *handler) Hello(_ context.Context, m wire.Hello) wire.HelloReply {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hellos = append(h.hellos, m)
	return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, PlanRevision: 7}
}
func (h *handler) Heartbeat(_ context.Context, hb wire.Heartbeat) wire.HeartbeatReply {
	return wire.HeartbeatReply{PlanRevision: hb.StoredRevision + 1}
}
func (h *handler) Plan(_ context.Context, r wire.PlanRequest) wire.PlanReply {
	return wire.PlanReply{Plan: &wire.Plan{Node: r.Node, Revision: r.Have + 1}}
}
func (h *handler) Status(_ context.Context, st wire.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, st)
}
func (h *handler) StoreTelemetry(_ context.Context, b wire.TelemetryBatch) wire.TelemetryAck {
	h.mu.Lock()
	h.batches = append(h.batches, b)
	h.storing++
	h.most = max(h.most, h.storing)
	hold := h.hold
	h.mu.Unlock()
	if hold != nil {
		<-hold
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.storing--
	return wire.TelemetryAck{Epoch: b.Epoch, Stored: uint64(len(b.Records))}
}
func (h *handler) ObserveSeen(node string, s fleet.Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen[node] = s
}

func TestServe(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	nc, _ := hubtest.Connect(t, url)
	h := &handler{seen: map[string]fleet.Session{}}
	s, err := nodesync.Serve(nodesync.Config{Conn: nc, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	a := hubtest.NewAgent(t, url, "n1", map[string]string{"k": "v"})

	if r := a.Hello(); r.PlanRevision != 7 {
		t.Fatalf("hello = %+v", r)
	}
	a.Stored = 3
	if r := a.Heartbeat(); r.PlanRevision != 4 {
		t.Fatalf("heartbeat = %+v, want the handler's answer", r)
	}
	if r := a.FetchPlan(); r.Plan == nil || r.Plan.Node != "n1" || r.Plan.Revision != 4 {
		t.Fatalf("plan = %+v", r)
	}
	// A body without a node name is the subject's; one naming another is refused.
	var hr wire.HeartbeatReply
	a.Request(wire.SubjectHeartbeat+"n1", wire.Heartbeat{StoredRevision: 1}, &hr)
	if hr.Error != "" || hr.PlanRevision != 2 {
		t.Fatalf("heartbeat without a node name = %+v", hr)
	}
	a.Request(wire.SubjectHeartbeat+"n1", wire.Heartbeat{Node: "n2"}, &hr)
	if hr.Error == "" {
		t.Fatal("heartbeat for n2 on n1's subject accepted")
	}
	a.SendStatus(wire.Status{Node: "n2", Digest: "spoof"})
	a.SendStatus(wire.Status{Digest: "mine"})

	link := nodesync.NewLink(nc)
	if err := link.AnnounceSeen("n1", fleet.Session{LastSeen: time.Unix(100, 0).UTC(), AppliedRevision: 3}); err != nil {
		t.Fatal(err)
	}
	atolltest.WaitFor(t, 10*time.Second, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.statuses) != 1 || h.seen["n1"].AppliedRevision != 3 {
			return fmt.Errorf("statuses %+v, seen %+v", h.statuses, h.seen)
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.statuses[0]; st.Node != "n1" || st.Digest != "mine" {
		t.Fatalf("status = %+v, want n1's own only", st)
	}
	if len(h.hellos) != 1 || h.hellos[0].Labels["k"] != "v" {
		t.Fatalf("hellos = %+v", h.hellos)
	}
}

func TestLink(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	nc, _ := hubtest.Connect(t, url)
	link := nodesync.NewLink(nc)
	ctx := hubtest.Context(t)
	if _, err := link.RequestLogs(ctx, "n1", wire.LogsRequest{}); !errors.Is(err, control.ErrUnreachable) {
		t.Fatalf("logs request with no agent = %v, want ErrUnreachable", err)
	}
	a := hubtest.NewAgent(t, url, "n1", nil)
	a.ServeLogs(func(r wire.LogsRequest) wire.LogsReply {
		return wire.LogsReply{Data: fmt.Appendf(nil, "%s %d", r.Workload, r.Tail)}
	})
	r, err := link.RequestLogs(ctx, "n1", wire.LogsRequest{Workload: "w", Tail: 3})
	if err != nil || string(r.Data) != "w 3" {
		t.Fatalf("logs = %q, %v", r.Data, err)
	}
	if err := link.Notify("n1", wire.Notify{PlanRevision: 9}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-a.Notifies():
		if n.PlanRevision != 9 {
			t.Fatalf("notify = %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notify")
	}
}

func TestServe_Telemetry(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	nc, _ := hubtest.Connect(t, url)
	h := &handler{}
	s, err := nodesync.Serve(nodesync.Config{Conn: nc, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	a := hubtest.NewAgent(t, url, "n1", nil)
	recs := []wire.TelemetryRecord{{Seq: 1, Subject: "a"}, {Seq: 2, Subject: "b"}}
	// A batch without a node name is the subject's.
	if ack := a.Forward(wire.TelemetryBatch{Epoch: "e1", Records: recs}); ack != (wire.TelemetryAck{Epoch: "e1", Stored: 2}) {
		t.Fatalf("ack = %+v", ack)
	}
	if ack := a.Forward(wire.TelemetryBatch{Node: "n2", Epoch: "e1", Records: recs}); !strings.Contains(ack.Error, `node "n2" on the subject of node "n1"`) {
		t.Fatalf("ack of a batch naming another node = %+v", ack)
	}
	m, err := nc.Request(wire.SubjectTelemetry+"n1", []byte(`{"node":"n1"}`), 10*time.Second)
	if err != nil || !strings.Contains(string(m.Data), "telemetry batch") {
		t.Fatalf("reply to a body that is not gzip = %s, %v", m.Data, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.batches) != 1 || h.batches[0].Node != "n1" || len(h.batches[0].Records) != 2 {
		t.Fatalf("batches = %+v, want n1's own only", h.batches)
	}
}

// TestServe_TelemetryBackpressure: batches being stored take at most
// their share of the slots, and heartbeats are still answered while more
// batches wait.
func TestServe_TelemetryBackpressure(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	nc, _ := hubtest.Connect(t, url)
	h := &handler{hold: make(chan struct{})}
	s, err := nodesync.Serve(nodesync.Config{Conn: nc, Handler: h, MaxInFlight: 4, MaxTelemetryInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	body, _ := wire.EncodeTelemetryBatch(wire.TelemetryBatch{Node: "n1", Epoch: "e1"})
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := nc.Request(wire.SubjectTelemetry+"n1", body, 20*time.Second)
			errs <- err
		}()
	}
	atolltest.WaitFor(t, 10*time.Second, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.storing != 2 {
			return fmt.Errorf("%d batches being stored, want 2", h.storing)
		}
		return nil
	})
	a := hubtest.NewAgent(t, url, "n2", nil)
	if r := a.Heartbeat(); r.Error != "" {
		t.Fatalf("heartbeat while telemetry waits = %+v", r)
	}
	close(h.hold)
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.most != 2 || len(h.batches) != 5 {
		t.Fatalf("at most %d batches at once of %d, want 2 of 5", h.most, len(h.batches))
	}
}
