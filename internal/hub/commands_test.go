package hub_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

func (h *testHub) restart(node, workload string, req any, wantCode int, hdr ...string) api.Command {
	h.t.Helper()
	code, body := h.do(http.MethodPost, "/v1/nodes/"+node+"/workloads/"+workload+":restart", req, hdr...)
	if code != wantCode {
		h.t.Fatalf("restart %s on %s = %d %s, want %d", workload, node, code, body, wantCode)
	}
	var cmd api.Command
	if err := json.Unmarshal(body, &cmd); err != nil {
		h.t.Fatal(err)
	}
	return cmd
}

func (h *testHub) commands(node string) map[string]string {
	h.t.Helper()
	var cmds []api.Command
	h.get("/v1/nodes/"+node+"/commands", &cmds)
	out := map[string]string{}
	for _, c := range cmds {
		out[c.ID] = c.State
	}
	return out
}

// TestHub_Commands: commands queued while the node is offline reach it on
// its next heartbeat; expired ones are dropped with an event and never
// delivered; an idempotency key returns the first command.
func TestHub_Commands(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", nil, "n1"), exec("db", nil, "n1"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	a.Sync()
	h.waitInstances("web", 1) // the status is in before time moves on
	c.Advance(time.Hour)      // n1 is offline from here on
	if n := h.node("n1"); n.State != api.NodeDisconnected {
		t.Fatalf("n1 = %s, want disconnected", n.State)
	}

	keep := h.restart("n1", "web", nil, http.StatusAccepted, api.IdempotencyKeyHeader, "key-1")
	if keep.State != "queued" || keep.Kind != wire.CommandRestart || keep.Workload != "web" || keep.Node != "n1" ||
		!keep.Created.Equal(c.Now()) || !keep.Expires.Equal(c.Now().Add(time.Hour)) || keep.ID == "" {
		t.Fatalf("queued command = %+v", keep)
	}
	// The same key again, as header or field: the same command, 200.
	if again := h.restart("n1", "web", nil, http.StatusOK, api.IdempotencyKeyHeader, "key-1"); again.ID != keep.ID {
		t.Fatalf("retry with the same key queued %s, want %s", again.ID, keep.ID)
	}
	if again := h.restart("n1", "web", api.CommandRequest{IdempotencyKey: "key-1"}, http.StatusOK); again.ID != keep.ID {
		t.Fatalf("retry with the key in the body queued %s, want %s", again.ID, keep.ID)
	}
	code, body := h.do(http.MethodPost, "/v1/nodes/n1/workloads/db:restart", nil, api.IdempotencyKeyHeader, "key-1")
	if code != http.StatusConflict || !strings.Contains(string(body), "key-1") {
		t.Fatalf("same key for another workload = %d %s, want 409", code, body)
	}
	short := h.restart("n1", "db", api.CommandRequest{TTL: "1m"}, http.StatusAccepted)
	if short.ID == keep.ID || !short.Expires.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("short command = %+v", short)
	}
	if got := h.commands("n1"); len(got) != 2 || got[keep.ID] != "queued" || got[short.ID] != "queued" {
		t.Fatalf("commands = %v, want both queued", got)
	}

	// Two minutes later the short one has expired: shown so, never delivered.
	c.Advance(2 * time.Minute)
	if got := h.commands("n1"); got[short.ID] != "expired" {
		t.Fatalf("commands = %v, want the short one expired", got)
	}
	r := a.Heartbeat()
	if len(r.Commands) != 1 || r.Commands[0].ID != keep.ID || r.Commands[0].Workload != "web" {
		t.Fatalf("heartbeat commands = %+v, want only %s", r.Commands, keep.ID)
	}
	ev := h.waitEvent("node=n1", events.TypeCommandExpired)
	if ev.Workload != "db" || !strings.Contains(ev.Message, short.ID) {
		t.Fatalf("expiry event = %+v", ev)
	}

	// Delivered until reported done, then never again.
	if r := a.Heartbeat(); len(r.Commands) != 1 {
		t.Fatalf("second heartbeat commands = %+v, want %s again", r.Commands, keep.ID)
	}
	a.Done = []string{keep.ID}
	if r := a.Heartbeat(); len(r.Commands) != 0 {
		t.Fatalf("heartbeat reporting it done still delivers %+v", r.Commands)
	}
	a.Done = []string{keep.ID} // a replay
	if r := a.Heartbeat(); len(r.Commands) != 0 {
		t.Fatalf("replayed heartbeat delivers %+v", r.Commands)
	}
	if got := h.commands("n1"); got[keep.ID] != "done" || got[short.ID] != "expired" {
		t.Fatalf("commands = %v, want done and expired", got)
	}
	if again := h.restart("n1", "web", nil, http.StatusOK, api.IdempotencyKeyHeader, "key-1"); again.ID != keep.ID || again.State != "done" {
		t.Fatalf("retry after done = %+v, want the done command", again)
	}

	// A day later the finished commands are gone from the list.
	c.Advance(25 * time.Hour)
	a.Heartbeat()
	if got := h.commands("n1"); len(got) != 0 {
		t.Fatalf("commands a day after = %v, want none", got)
	}
}

// TestHub_CommandNotify: queueing for a connected node pushes a Notify.
func TestHub_CommandNotify(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(t0)})
	h.apply(exec("web", nil, "n1"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	a.Sync()
	for len(a.Notifies()) > 0 {
		<-a.Notifies()
	}
	cmd := h.restart("n1", "web", nil, http.StatusAccepted)
	select {
	case n := <-a.Notifies():
		if n.PlanRevision != 1 {
			t.Fatalf("notify = %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notify after queueing a command")
	}
	if r := a.Heartbeat(); len(r.Commands) != 1 || r.Commands[0].ID != cmd.ID {
		t.Fatalf("heartbeat = %+v", r)
	}
}

// TestHub_ExpireSweep: a command for a node that never comes back is
// recorded as expired by the periodic sweep.
func TestHub_ExpireSweep(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", nil, "n1"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	cmd := h.restart("n1", "web", api.CommandRequest{TTL: "30s"}, http.StatusAccepted)
	for range int(hub.ExpireInterval/hub.SweepInterval) + 1 {
		waitTimer(t, c)
		c.Advance(hub.SweepInterval)
	}
	ev := h.waitEvent("node=n1", events.TypeCommandExpired)
	if !strings.Contains(ev.Message, cmd.ID) {
		t.Fatalf("event = %+v", ev)
	}
}
