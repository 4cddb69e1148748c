package hub_test

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
)

// TestHub_RestartLosesNothing stops a hub and starts another on the same
// data directory: intent, plans and revisions, node records, statuses and
// queued commands are all back, and revisions and stamps carry on.
func TestHub_RestartLosesNothing(t *testing.T) {
	dir := t.TempDir()
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: dir, Clock: c})
	h.apply(exec("web", map[string]string{"site": "a"}), exec("db", nil, "n1", "n9"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", map[string]string{"site": "a"})
	a.Hello()
	a.Sync()
	c.Advance(10 * time.Second)
	a.Sync() // sends the status; lastSeen moves in memory only (< fleet.PersistEvery)
	h.waitInstances("web", 1)
	cmd := h.restart("n1", "web", nil, http.StatusAccepted, api.IdempotencyKeyHeader, "k")

	var ws1, ws2 []api.Workload
	var ns1, ns2 []api.Node
	h.get("/v1/workloads", &ws1)
	h.get("/v1/nodes", &ns1)
	n1 := h.node("n1")
	cmds1 := h.commands("n1")
	oldStamp := planHistory(t, h.NATSURL(), "n1")
	h.stop()

	// The clock went back an hour across the restart.
	c2 := hubtest.NewClock(t0.Add(-time.Hour))
	h2 := startHub(t, hub.Config{DataDir: dir, Clock: c2})
	c2.Advance(time.Hour + 10*time.Second) // back to when the first hub stopped
	h2.get("/v1/workloads", &ws2)
	h2.get("/v1/nodes", &ns2)
	if !reflect.DeepEqual(ws1, ws2) {
		t.Fatalf("workloads after restart:\n%+v\nwant\n%+v", ws2, ws1)
	}
	if !reflect.DeepEqual(ns1, ns2) {
		t.Fatalf("nodes after restart:\n%+v\nwant\n%+v", ns2, ns1)
	}
	if got := h2.node("n1"); !reflect.DeepEqual(got, n1) || !got.LastSeen.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("n1 after restart = %+v\nwant %+v (last seen as the first hub stopped)", got, n1)
	}
	if got := h2.commands("n1"); !reflect.DeepEqual(got, cmds1) {
		t.Fatalf("commands after restart = %v, want %v", got, cmds1)
	}
	if again := h2.restart("n1", "web", nil, http.StatusOK, api.IdempotencyKeyHeader, "k"); again.ID != cmd.ID {
		t.Fatalf("idempotency key after restart queued %s, want %s", again.ID, cmd.ID)
	}

	// The agent reconnects: same revision, its command, no status needed.
	a2 := hubtest.NewAgent(t, h2.NATSURL(), "n1", map[string]string{"site": "a"})
	a2.Stored, a2.Applied, a2.Plan, a2.Digest = a.Stored, a.Applied, a.Plan, a.Digest
	r := a2.Heartbeat()
	if r.Error != "" || r.PlanRevision != a.Stored || r.NeedStatus || len(r.Commands) != 1 || r.Commands[0].ID != cmd.ID {
		t.Fatalf("heartbeat after restart = %+v, want revision %d, no status request, command %s", r, a.Stored, cmd.ID)
	}

	// A change carries the revision on and stamps after everything before,
	// though the clock went back.
	changed := exec("web", map[string]string{"site": "a"})
	changed.Spec.Priority = 3
	h2.apply(changed)
	hist := planHistory(t, h2.NATSURL(), "n1")
	last, prev := hist[len(hist)-1], oldStamp[len(oldStamp)-1]
	if last.Revision != prev.Revision+1 || !prev.Stamp.Before(last.Stamp) {
		t.Fatalf("plan after restart = revision %d stamp %v; before: revision %d stamp %v", last.Revision, last.Stamp, prev.Revision, prev.Stamp)
	}
}

func (h *testHub) waitInstances(workload string, running int) {
	h.t.Helper()
	waitFor(h.t, func() bool {
		n := 0
		for _, in := range h.workload(workload).Instances {
			if in.State == "running" {
				n++
			}
		}
		return n == running
	}, "%s has %d running instances", workload, running)
}
