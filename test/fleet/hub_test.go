package fleet_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	procfs "atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

// hubDownObservation is how long a test watches the nodes after the hub
// died: many heartbeats (200 ms) and a few NATS reconnect attempts (every
// 1-2 s), each of which could disturb a workload if the agent tied them to
// the hub.
const hubDownObservation = 4 * time.Second

// workloadEvents returns the events about a workload (started, stopped,
// exited, configured...) among evs.
func workloadEvents(evs []wire.Event) []wire.Event {
	var out []wire.Event
	for _, e := range evs {
		if e.Workload != "" {
			out = append(out, e)
		}
	}
	return out
}

// TestFleet_HubSIGKILL_WorkloadsUntouched checks DESIGN invariant 1: with
// workloads running on two nodes, SIGKILL the hub; for several seconds of
// heartbeats and reconnect attempts no workload stops, restarts or changes
// (same pids, restart counts and processes, no workload event). Then a hub
// restarted on the same data has kept every workload and its targets, and
// the nodes' last statuses, before any node reconnects; once the links are
// back the nodes show connected with their plans applied, still untouched.
func TestFleet_HubSIGKILL_WorkloadsUntouched(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "site=a,role=web")
	b := f.addNode("b", "site=b,role=web")
	nodes := []*node{a, b}
	f.apply([]wl{
		{name: "web", selector: map[string]string{"role": "web"}, env: map[string]string{"LEVEL": "info"}},
		{name: "cache", nodes: []string{a.name}},
		{name: "db", nodes: []string{b.name}},
	}, "workload/web created (2 nodes)", "workload/cache created (1 node)", "workload/db created (1 node)")
	before := map[string]snapshot{
		a.name: a.waitRunning("web", "cache"),
		b.name: b.waitRunning("web", "db"),
	}
	synced := f.waitSynced(f.begin, nodes...)
	// The hub's stored statuses must have these pids before the kill.
	f.waitFor(0, func() error {
		for _, n := range nodes {
			hn, err := f.hubNode(n.name)
			if err != nil {
				return err
			}
			if err := sameRun(n.name, before[n.name], statusMap(hn.Instances)); err != nil {
				return fmt.Errorf("hub's status: %w", err)
			}
		}
		return nil
	})
	wantWorkloads := f.getWorkloads()
	placedBefore := f.placement()
	seq := map[string]uint64{a.name: lastSeq(a.events()), b.name: lastSeq(b.events())}
	f.logf("4 workload instances running on %s and %s, hub has their status", a.name, b.name)

	tKill := time.Now()
	f.killHub()
	f.logf("hub SIGKILLed")
	f.waitFor(0, func() error {
		for _, n := range nodes {
			info, err := n.info()
			if err != nil {
				return err
			}
			if info.HubConnected {
				return fmt.Errorf("node %s still says hubConnected", n.name)
			}
		}
		return nil
	})
	f.logf("both agents report hubConnected=false (%s after the kill)", since(tKill))

	// Observe: every check that fails ends the test at once; the wait ends
	// once the nodes have been watched for hubDownObservation.
	tObs := time.Now()
	checks := 0
	untouched := func() error {
		for _, n := range nodes {
			st, err := n.statuses()
			if err != nil {
				return err
			}
			if err := sameRun(n.name, before[n.name], st); err != nil {
				return err
			}
			if evs := workloadEvents(eventsAfter(n.events(), seq[n.name])); len(evs) > 0 {
				return fmt.Errorf("node %s recorded workload events with the hub down:%s", n.name, briefEvents(evs))
			}
		}
		if got := f.placement(); !equalPlacement(got, placedBefore) {
			return fmt.Errorf("processes changed: %v, were %v", got, placedBefore)
		}
		return nil
	}
	f.waitFor(hubDownObservation+waitTimeout, func() error {
		if err := untouched(); err != nil {
			t.Fatalf("with the hub down (%s after the kill): %v", since(tKill), err)
		}
		checks++
		if time.Since(tObs) < hubDownObservation {
			return fmt.Errorf("observed %s of %v", since(tObs), hubDownObservation)
		}
		return nil
	})
	f.logf("observed the nodes for %s (%d checks): same pids, restarts and processes, no workload events", since(tObs), checks)

	// Restart the hub with the links cut, so what it shows first is what it
	// kept, not what the nodes tell it again.
	for _, n := range nodes {
		n.proxy.Cut()
	}
	tRestart := time.Now()
	f.startHub()
	f.logf("hub restarted on the same data, links cut (%s after the kill)", since(tKill))
	if got := f.getWorkloads(); !equalWorkloads(got, wantWorkloads) {
		t.Errorf("restarted hub's workloads differ:\n got %+v\nwant %+v", got, wantWorkloads)
	}
	gotNodes := f.getNodes()
	for _, n := range nodes {
		gn, want := gotNodes[n.name], synced[n.name]
		if gn.State != api.NodeDisconnected {
			t.Errorf("restarted hub, link cut: node %s is %q; want %q (silent since before the kill)", n.name, gn.State, api.NodeDisconnected)
		}
		if gn.PlanRevision != want.PlanRevision || gn.AppliedRevision != want.AppliedRevision || gn.Workloads != want.Workloads ||
			!maps.Equal(gn.Labels, want.Labels) {
			t.Errorf("restarted hub: node %s = %+v; want as before the kill %+v", n.name, gn, want)
		}
		hn, err := f.hubNode(n.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameRun(n.name, before[n.name], statusMap(hn.Instances)); err != nil {
			t.Errorf("restarted hub's stored status: %v", err)
		}
	}
	f.logf("restarted hub shows the same workloads, targets, revisions and statuses; nodes disconnected")

	for _, n := range nodes {
		n.proxy.Restore()
	}
	tRestore := time.Now()
	after := f.waitSynced(tRestart, nodes...)
	f.logf("links restored; both nodes connected with plan == applied (%s)", since(tRestore))
	for _, n := range nodes {
		if after[n.name].PlanRevision != synced[n.name].PlanRevision {
			t.Errorf("node %s: plan revision %d after the hub restart, %d before: the restart changed its plan",
				n.name, after[n.name].PlanRevision, synced[n.name].PlanRevision)
		}
		hn, err := f.hubNode(n.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameRun(n.name, before[n.name], statusMap(hn.Instances)); err != nil {
			t.Errorf("hub's status after reconnect: %v", err)
		}
	}
	if err := untouched(); err != nil {
		t.Errorf("after the hub came back: %v", err)
	}
	for name, w := range f.getWorkloads() {
		for _, in := range w.Instances {
			if in.NodeState != api.NodeConnected || in.State != "running" {
				t.Errorf("get workloads: %s on %s is %s/%s; want connected/running", name, in.Node, in.NodeState, in.State)
			}
		}
	}
	f.logf("after reconnect: statuses back at the hub, workloads still untouched")
}

func equalPlacement(a, b map[string]map[string][]int) bool {
	return maps.EqualFunc(a, b, func(x, y map[string][]int) bool {
		return maps.EqualFunc(x, y, func(p, q []int) bool { return slices.Equal(sortedInts(p), sortedInts(q)) })
	})
}

func sortedInts(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// equalWorkloads compares what the hub keeps of workloads: names,
// manifests and targets (not the nodes' live state).
func equalWorkloads(a, b map[string]api.Workload) bool {
	return maps.EqualFunc(a, b, func(x, y api.Workload) bool {
		if x.Targets != y.Targets || x.TargetReason != y.TargetReason || jsonText(x.Manifest) != jsonText(y.Manifest) ||
			len(x.Instances) != len(y.Instances) {
			return false
		}
		for i := range x.Instances {
			if x.Instances[i].Node != y.Instances[i].Node {
				return false
			}
		}
		return true
	})
}

// TestFleet_RebootWhileHubDown checks DESIGN invariant 2 with a hub: the
// hub dies, then the node "reboots" (its agent is SIGKILLed and its
// workloads killed); the agent, started again with the hub still down,
// runs its stored plan at once: the same workloads, with the hub's spec,
// as new processes.
func TestFleet_RebootWhileHubDown(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "site=a")
	f.apply([]wl{
		{name: "sensor", selector: map[string]string{"site": "a"}, env: map[string]string{"MODE": "fleet"}},
		{name: "uploader", nodes: []string{a.name}},
	}, "workload/sensor created (1 node)", "workload/uploader created (1 node)")
	before := a.waitRunning("sensor", "uploader")
	synced := f.waitSynced(f.begin, a)
	f.logf("sensor and uploader running on %s, plan revision %d applied", a.name, synced[a.name].PlanRevision)

	f.killHub()
	f.logf("hub SIGKILLed")
	a.kill9()
	if err := f.killWorkloads(func(p wproc) bool { return p.node == a.name }); err != nil {
		t.Fatal(err)
	}
	for name, s := range before {
		if procfs.Alive(s.PID) {
			t.Fatalf("%s pid %d survived the reboot", name, s.PID)
		}
	}
	f.logf("agent SIGKILLed and its workloads killed: the node 'rebooted'")

	tStart := time.Now()
	a.start()
	after := a.waitRunning("sensor", "uploader")
	f.logf("agent restarted with the hub down; both workloads running again (%s)", since(tStart))
	for name, s := range after {
		if s.PID == before[name].PID {
			t.Errorf("%s has its old pid %d after the reboot", name, s.PID)
		}
	}
	if v, err := f.procEnv(after["sensor"].PID, "sensor", "MODE"); err != nil || v != "fleet" {
		t.Errorf("sensor after the reboot: MODE=%q (%v); want the hub's spec, MODE=fleet", v, err)
	}
	info, err := a.info()
	if err != nil {
		t.Fatal(err)
	}
	if info.HubConnected || info.StoredRevision != synced[a.name].PlanRevision || info.AppliedRevision != synced[a.name].PlanRevision {
		t.Errorf("node info after the reboot: hubConnected %v, stored %d, applied %d; want false, %d, %d",
			info.HubConnected, info.StoredRevision, info.AppliedRevision, synced[a.name].PlanRevision, synced[a.name].PlanRevision)
	}
	placed := f.placement()
	for _, w := range []string{"sensor", "uploader"} {
		if pids := placed[w][a.name]; len(pids) != 1 || pids[0] != after[w].PID {
			t.Errorf("%s: processes on the node %v; want exactly pid %d", w, pids, after[w].PID)
		}
	}
	st := a.statusJSON()
	if len(st) != 2 || !running(st["sensor"]) || !running(st["uploader"]) {
		t.Errorf("node status -o json after the reboot: %+v", st)
	}
	f.logf("node runs its stored plan (revision %d) without the hub", info.StoredRevision)
}
