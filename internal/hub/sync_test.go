package hub_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/wire"
)

// TestHub_SyncLoop drives a fake agent through the whole loop: hello,
// heartbeat, plan fetch, status; then describe shows the instances, and
// replaying every message changes nothing.
func TestHub_SyncLoop(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})

	res := h.apply(exec("web", map[string]string{"site": "a"}), exec("db", nil, "n1"), exec("idle", nil))
	want := []api.ApplyResult{{Name: "web", Action: api.ActionCreated, Targets: 0},
		{Name: "db", Action: api.ActionCreated, Targets: 1}, {Name: "idle", Action: api.ActionCreated, Targets: 0}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("apply = %+v, want %+v", res, want)
	}
	if w := h.workload("idle"); w.Targets != 0 || w.TargetReason != planner.ReasonNoPlacement || len(w.Instances) != 0 {
		t.Fatalf("idle = %+v, want no targets and the reason", w)
	}
	// n1 is named by db: its plan waits for it before it was ever seen.
	if n := h.node("n1"); n.State != api.NodeNeverSeen || n.PlanRevision != 1 || n.Workloads != 1 {
		t.Fatalf("n1 before hello = %+v, want never-seen with plan 1", n)
	}

	a := hubtest.NewAgent(t, h.NATSURL(), "n1", map[string]string{"site": "a"})
	hello := a.Hello()
	// The hello's labels bring web in: revision 2.
	if hello.Error != "" || hello.PlanRevision != 2 || hello.ProtocolVersion != wire.ProtocolVersion {
		t.Fatalf("hello = %+v, want plan revision 2", hello)
	}
	hb := a.Heartbeat()
	if hb.Error != "" || hb.PlanRevision != 2 || !hb.NeedStatus || len(hb.Commands) != 0 {
		t.Fatalf("first heartbeat = %+v, want revision 2 and a status request", hb)
	}
	pr := a.FetchPlan()
	if pr.Error != "" || pr.Plan == nil || pr.Plan.Revision != 2 || pr.Plan.Node != "n1" ||
		!reflect.DeepEqual(planNames(pr.Plan), []string{"db", "web"}) {
		t.Fatalf("plan = %+v, want revision 2 with db and web", pr)
	}
	for _, pw := range pr.Plan.Workloads {
		if pw.Stamp.IsZero() || pw.Workload.Spec.Restart.Policy == "" {
			t.Fatalf("plan workload %s has no stamp or is not normalized: %+v", pw.Workload.Metadata.Name, pw)
		}
	}
	if pr := a.FetchPlan(); pr.Plan != nil {
		t.Fatalf("plan request with the current revision = %+v, want no plan", pr)
	}
	a.Applied = 2
	a.Heartbeat()
	a.SendStatus(a.Status())

	atolltest.WaitFor(t, 10*time.Second, func() error {
		w := h.workload("web")
		if len(w.Instances) != 1 || w.Instances[0].State != string(wire.StateRunning) {
			return fmt.Errorf("web instances = %+v", w.Instances)
		}
		return nil
	})
	w := h.workload("web")
	if in := w.Instances[0]; w.Targets != 1 || in.Node != "n1" || in.NodeState != api.NodeConnected || in.Revision != 2 {
		t.Fatalf("web = %+v, want one running instance on connected n1 at revision 2", w)
	}
	n := h.node("n1")
	if n.State != api.NodeConnected || !n.LastSeen.Equal(t0) || n.PlanRevision != 2 || n.StoredRevision != 2 ||
		n.AppliedRevision != 2 || n.Workloads != 2 || len(n.Instances) != 2 || n.Labels["site"] != "a" || n.Version != "test" {
		t.Fatalf("n1 = %+v", n)
	}
	if hb := a.Heartbeat(); hb.NeedStatus {
		t.Fatal("heartbeat with the stored status's digest still asks for the status")
	}
	// A quiet heartbeat (the hub said it takes them): "{}" changes nothing
	// and asks for nothing; a new digest does ask.
	if !hello.QuietHeartbeats {
		t.Error("hello reply does not offer quiet heartbeats")
	}
	var quiet wire.HeartbeatReply
	a.Request(wire.SubjectHeartbeat+"n1", wire.Heartbeat{}, &quiet)
	if quiet.Error != "" || quiet.NeedStatus || quiet.PlanRevision != 2 {
		t.Errorf("quiet heartbeat = %+v, want revision 2 and no status request", quiet)
	}
	if n := h.node("n1"); n.StoredRevision != 2 || n.AppliedRevision != 2 {
		t.Errorf("after a quiet heartbeat n1 = %+v, want its revisions kept", n)
	}
	a.Request(wire.SubjectHeartbeat+"n1", wire.Heartbeat{StatusDigest: "changed"}, &quiet)
	if !quiet.NeedStatus {
		t.Error("a heartbeat with a new digest did not ask for the status")
	}

	// Replays: Hello, an old heartbeat, the same status, an older status.
	before := dump(t, h.NATSURL())
	if r := a.Hello(); r.PlanRevision != 2 {
		t.Fatalf("replayed hello = %+v", r)
	}
	var r wire.HeartbeatReply
	a.Request(wire.SubjectHeartbeat+"n1", wire.Heartbeat{Node: "n1"}, &r)
	if r.PlanRevision != 2 {
		t.Fatalf("replayed old heartbeat = %+v", r)
	}
	a.SendStatus(a.Status())
	old := a.Status()
	old.Time, old.Digest, old.Workloads = old.Time.Add(-time.Hour), "older", nil
	a.SendStatus(old)
	a.Digest = a.Status().Digest
	a.Heartbeat() // ordered after the statuses on the hub's side of NATS
	if d := diff(before, dump(t, h.NATSURL())); d != "" {
		t.Fatalf("replays changed the store:\n%s", d)
	}
	if n := h.node("n1"); n.StoredRevision != 2 || n.AppliedRevision != 2 || len(n.Instances) != 2 {
		t.Fatalf("n1 after replays = %+v", n)
	}
}

// TestHub_NotifyAndRetarget: a change pushes a Notify to the node, a
// label change in Hello retargets, and an unchanged re-apply bumps nothing.
func TestHub_NotifyAndRetarget(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(t0)})
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", map[string]string{"site": "a"})
	if r := a.Hello(); r.PlanRevision != 0 {
		t.Fatalf("hello with nothing targeting = %+v", r)
	}
	if r := h.apply(exec("web", map[string]string{"site": "a"})); r[0].Targets != 1 {
		t.Fatalf("apply = %+v, want 1 target", r)
	}
	select {
	case n := <-a.Notifies():
		if n.PlanRevision != 1 {
			t.Fatalf("notify = %+v, want revision 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notify after a change to the node's plan")
	}
	if r := h.apply(exec("web", map[string]string{"site": "a"})); r[0].Action != api.ActionUnchanged {
		t.Fatalf("re-apply = %+v, want unchanged", r)
	}
	if n := h.node("n1"); n.PlanRevision != 1 {
		t.Fatalf("revision after an unchanged apply = %d, want 1", n.PlanRevision)
	}
	changed := exec("web", map[string]string{"site": "a"})
	changed.Spec.Priority = 5
	if r := h.apply(changed); r[0].Action != api.ActionConfigured {
		t.Fatalf("apply of a change = %+v, want configured", r)
	}
	if n := h.node("n1"); n.PlanRevision != 2 {
		t.Fatalf("revision after a change = %d, want 2", n.PlanRevision)
	}
	a.Labels = map[string]string{"site": "b"}
	if r := a.Hello(); r.PlanRevision != 3 {
		t.Fatalf("hello with new labels = %+v, want revision 3", r)
	}
	if pr := a.FetchPlan(); pr.Plan == nil || len(pr.Plan.Workloads) != 0 {
		t.Fatalf("plan after the label change = %+v, want empty", pr)
	}
	if w := h.workload("web"); w.Targets != 0 || !strings.Contains(w.TargetReason, "site=a") {
		t.Fatalf("web = %+v, want no target and a reason naming the selector", w)
	}
}

func TestHub_ProtocolErrors(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(t0)})
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	before := dump(t, h.NATSURL())

	a.Protocol = wire.ProtocolVersion + 1
	if r := a.Hello(); !strings.Contains(r.Error, "not supported") || r.ProtocolVersion != wire.ProtocolVersion {
		t.Fatalf("hello with a newer protocol = %+v, want a refusal naming ours", r)
	}
	a.Protocol = 0
	if r := a.Hello(); r.Error == "" {
		t.Fatal("hello without a protocol version accepted")
	}
	if r := a.Heartbeat(); r.Error != control.ErrUnknownNode {
		t.Fatalf("heartbeat before hello = %+v, want %q", r, control.ErrUnknownNode)
	}
	var hr wire.HelloReply
	spoof := a.HelloMsg()
	spoof.Node, spoof.ProtocolVersion = "other", wire.ProtocolVersion
	a.Request(wire.SubjectHello+"n1", spoof, &hr)
	if !strings.Contains(hr.Error, "other") {
		t.Fatalf("hello naming another node = %+v, want a refusal", hr)
	}
	var pr wire.PlanReply
	a.Request(wire.SubjectPlan+"n1", "not an object", &pr)
	if !strings.Contains(pr.Error, "decode") {
		t.Fatalf("garbage plan request = %+v", pr)
	}
	if d := diff(before, dump(t, h.NATSURL())); d != "" {
		t.Fatalf("refused messages changed the store:\n%s", d)
	}
}

// TestHub_Disconnected: a silent node is shown disconnected, keeps its
// workloads, gets changes planned while away, and picks them up when back.
func TestHub_Disconnected(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", map[string]string{"site": "a"}))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", map[string]string{"site": "a"})
	a.Hello()
	a.Sync()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if w := h.workload("web"); len(w.Instances) != 1 || w.Instances[0].State != "running" {
			return fmt.Errorf("web = %+v", w)
		}
		return nil
	})

	// Wait for the sweep loop to park on its timer, then go silent.
	waitTimer(t, c)
	c.Advance(wire.DisconnectedAfter)
	n := h.node("n1")
	if n.State != api.NodeDisconnected || !n.LastSeen.Equal(t0) || n.Workloads != 1 || n.PlanRevision != 1 {
		t.Fatalf("n1 after %v of silence = %+v, want disconnected with its plan intact", wire.DisconnectedAfter, n)
	}
	w := h.workload("web")
	if len(w.Instances) != 1 || w.Instances[0].NodeState != api.NodeDisconnected || w.Instances[0].State != "running" {
		t.Fatalf("web = %+v, want the instance kept, its node disconnected, its last state shown", w)
	}
	ev := h.waitEvent("node=n1", events.TypeNodeDisconnected)
	if !strings.Contains(ev.Message, "workloads stay") {
		t.Fatalf("disconnect event = %+v", ev)
	}

	// A change while away is planned for the node and waits.
	h.apply(exec("extra", map[string]string{"site": "a"}))
	if n := h.node("n1"); n.PlanRevision != 2 || n.Workloads != 2 || n.State != api.NodeDisconnected {
		t.Fatalf("n1 after a change while away = %+v, want revision 2 planned", n)
	}

	// Back: the next heartbeat has the new revision.
	c.Advance(time.Hour)
	r := a.Sync()
	if r.PlanRevision != 2 || a.Stored != 2 || !reflect.DeepEqual(planNames(a.Plan), []string{"extra", "web"}) {
		t.Fatalf("after reconnect: reply %+v, stored %d, plan %v", r, a.Stored, planNames(a.Plan))
	}
	if n := h.node("n1"); n.State != api.NodeConnected || n.StoredRevision != 2 {
		t.Fatalf("n1 after reconnect = %+v", n)
	}
	h.waitEvent("node=n1", events.TypeNodeConnected)
}

// TestHub_TwoHubs runs two hubs on one NATS and applies from both at once:
// plan revisions stay a gapless sequence, one per content change, and both
// hubs see the node connected whichever one handles its heartbeats.
func TestHub_TwoHubs(t *testing.T) {
	c := hubtest.NewClock(t0)
	ha := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	hb := startHub(t, hub.Config{NATSURL: ha.NATSURL(), Clock: c})
	a := hubtest.NewAgent(t, ha.NATSURL(), "n1", map[string]string{"site": "a"})
	a.Hello()

	const n = 12
	errs := make(chan error, n)
	for i := range n {
		h := ha
		if i%2 == 1 {
			h = hb
		}
		go func() {
			code, body := h.do("POST", "/v1/workloads:apply", []any{exec(fmt.Sprintf("w%02d", i), map[string]string{"site": "a"})})
			if code != 200 {
				errs <- fmt.Errorf("apply w%02d = %d %s", i, code, body)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	final := ha.node("n1")
	if final.Workloads != n || final.PlanRevision > n || final.PlanRevision == 0 {
		t.Fatalf("n1 = %+v, want %d workloads in at most %d revisions", final, n, n)
	}
	hist := planHistory(t, ha.NATSURL(), "n1")
	for i := 1; i < len(hist); i++ {
		if hist[i].Revision != hist[i-1].Revision+1 {
			t.Fatalf("plan revisions %d then %d: not consecutive", hist[i-1].Revision, hist[i].Revision)
		}
		if planner.SameContent(hist[i].Workloads, hist[i-1].Workloads) {
			t.Fatalf("revision %d has the same content as %d", hist[i].Revision, hist[i-1].Revision)
		}
	}
	if last := hist[len(hist)-1]; last.Revision != final.PlanRevision || len(last.Workloads) != n {
		t.Fatalf("last plan = revision %d with %d workloads", last.Revision, len(last.Workloads))
	}

	// Heartbeats go to either hub; both show the node connected.
	for range 6 {
		c.Advance(wire.HeartbeatInterval)
		a.Heartbeat()
	}
	atolltest.WaitFor(t, 10*time.Second, func() error {
		for _, h := range []*testHub{ha, hb} {
			if n := h.node("n1"); n.State != api.NodeConnected || !n.LastSeen.Equal(c.Now()) {
				return fmt.Errorf("%s: n1 = %s, last seen %v", h.base, n.State, n.LastSeen)
			}
		}
		return nil
	})
}
