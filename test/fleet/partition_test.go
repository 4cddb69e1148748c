package fleet_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	procfs "atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

// cut cuts n's link and waits until its agent says the hub is gone.
func (n *node) cut() time.Time {
	n.f.t.Helper()
	t0 := time.Now()
	n.proxy.Cut()
	n.f.waitFor(0, func() error {
		info, err := n.info()
		if err != nil {
			return err
		}
		if info.HubConnected {
			return fmt.Errorf("node %s still says hubConnected after the cut", n.name)
		}
		return nil
	})
	return t0
}

// waitHubState waits until the hub shows node in state want, and fails the
// test at once if it ever shows a state outside allowed.
func (f *fleet) waitHubState(n *node, want string, allowed ...string) api.Node {
	f.t.Helper()
	var got api.Node
	f.waitFor(0, func() error {
		m, err := f.hubNodes()
		if err != nil {
			return err
		}
		got = m[n.name]
		if got.State != want && !slices.Contains(allowed, got.State) {
			f.t.Fatalf("hub shows node %s %q; only %q then %q are right", n.name, got.State, allowed, want)
		}
		if got.State != want {
			return fmt.Errorf("node %s is %s", n.name, got.State)
		}
		return nil
	})
	return got
}

// TestFleet_OfflineNodeConvergesOnReconnect checks DESIGN invariants 4 and
// 5: a node whose link is cut shows disconnected (never failed), keeps
// running its workloads, and none is started anywhere else; changes made
// meanwhile (a new workload, a changed spec, a deletion) wait at the hub
// and reach the node once the link is back, with no operator action.
func TestFleet_OfflineNodeConvergesOnReconnect(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "role=edge")
	b := f.addNode("b", "role=edge")
	onA := func(name string, env map[string]string) wl {
		return wl{name: name, nodes: []string{a.name}, env: env}
	}
	f.apply([]wl{
		onA("keep", nil),
		onA("change", map[string]string{"VERSION": "1"}),
		onA("gone", nil),
		{name: "everywhere", selector: map[string]string{"role": "edge"}},
	}, "workload/keep created (1 node)", "workload/change created (1 node)", "workload/gone created (1 node)",
		"workload/everywhere created (2 nodes)")
	beforeA := a.waitRunning("keep", "change", "gone", "everywhere")
	beforeB := b.waitRunning("everywhere")
	synced := f.waitSynced(f.begin, a, b)
	f.logf("%s runs keep, change, gone, everywhere; %s runs everywhere", a.name, b.name)

	tCut := a.cut()
	f.logf("link of %s cut; its agent sees the hub gone", a.name)
	f.waitHubState(a, api.NodeDisconnected, api.NodeConnected)
	f.logf("hub shows %s disconnected (%s after the cut)", a.name, since(tCut))
	// The hub records the silence once, and says the workloads stay.
	f.waitFor(0, func() error {
		evs, err := f.hubEvents(a.name)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "node-disconnected" {
				if !strings.Contains(e.Message, "its workloads stay") {
					t.Errorf("node-disconnected event says %q; want it to say the workloads stay", e.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no node-disconnected event for %s yet:%s", a.name, briefEvents(evs))
	})
	f.logf("hub recorded node-disconnected (%s after the cut)", since(tCut))

	for name, w := range f.getWorkloads() {
		for _, in := range w.Instances {
			want := api.NodeConnected
			if in.Node == a.name {
				want = api.NodeDisconnected
			}
			if in.NodeState != want || in.State != "running" {
				t.Errorf("get workloads: %s on %s is %s/%s; want %s/running (last reported, not failed)", name, in.Node, in.NodeState, in.State, want)
			}
		}
		if name != "everywhere" && (len(w.Instances) != 1 || w.Instances[0].Node != a.name) {
			t.Errorf("get workloads: %s has instances %+v; want only on %s: a disconnected node's workloads are not moved", name, w.Instances, a.name)
		}
	}
	if r := f.mustCLI("get", "nodes"); !containsRow(r.stdout, a.name, "disconnected") || strings.Contains(r.stdout, "failed") {
		t.Errorf("get nodes does not show %s disconnected (and nothing failed):\n%s", a.name, r.stdout)
	}

	// While cut: a new workload for a, a changed spec, a deletion.
	f.apply([]wl{onA("fresh", nil), onA("change", map[string]string{"VERSION": "2"})},
		"workload/fresh created (1 node)", "workload/change configured (1 node)")
	if r := f.mustCLI("delete", "workload", "gone"); r.stdout != "workload/gone deleted\n" {
		t.Errorf("delete workload gone: %s", r)
	}
	f.logf("while cut: applied fresh, changed change to VERSION=2, deleted gone")
	hn := f.getNodes()[a.name]
	if hn.State != api.NodeDisconnected || hn.PlanRevision <= synced[a.name].PlanRevision || hn.AppliedRevision != synced[a.name].AppliedRevision {
		t.Errorf("hub's %s while cut: %s, plan %d, applied %d; want disconnected, plan past %d, applied still %d",
			a.name, hn.State, hn.PlanRevision, hn.AppliedRevision, synced[a.name].PlanRevision, synced[a.name].AppliedRevision)
	}
	// The node has not heard: it runs what it had, with the same pids.
	if st, err := a.statuses(); err != nil {
		t.Fatal(err)
	} else if err := sameRun(a.name, beforeA, st); err != nil {
		t.Errorf("while cut: %v", err)
	}
	placed := f.placement()
	for _, w := range []string{"keep", "change", "gone"} {
		if pids := placed[w]; len(pids) != 1 || !slices.Equal(pids[a.name], []int{beforeA[w].PID}) {
			t.Errorf("while cut: %s runs as %v; want only pid %d on %s", w, pids, beforeA[w].PID, a.name)
		}
	}
	if len(placed["fresh"]) != 0 {
		t.Errorf("while cut: fresh already runs: %v", placed["fresh"])
	}

	tRestore := time.Now()
	a.proxy.Restore()
	f.logf("link of %s restored; no operator action from here", a.name)
	after := a.waitRunning("keep", "change", "fresh", "everywhere")
	f.waitFor(0, func() error {
		st, err := a.statuses()
		if err != nil {
			return err
		}
		if s := st["change"]; !running(s) || s.PID == beforeA["change"].PID {
			return fmt.Errorf("change not restarted yet: %+v", s)
		}
		after = st
		return nil
	})
	final := f.waitSynced(tRestore, a, b)
	f.logf("%s converged and the hub shows it connected, applied == plan == %d (%s after restore)",
		a.name, final[a.name].PlanRevision, since(tRestore))

	if v, err := f.procEnv(after["change"].PID, "change", "VERSION"); err != nil || v != "2" {
		t.Errorf("change after reconnect: VERSION=%q (%v); want 2", v, err)
	}
	if procfs.Alive(beforeA["change"].PID) || procfs.Alive(beforeA["gone"].PID) {
		t.Errorf("old processes of change (%d) or gone (%d) still alive", beforeA["change"].PID, beforeA["gone"].PID)
	}
	for _, w := range []string{"keep", "everywhere"} {
		if after[w].PID != beforeA[w].PID || after[w].Restarts != beforeA[w].Restarts {
			t.Errorf("%s on %s: pid %d restarts %d after reconnect; want untouched pid %d restarts %d",
				w, a.name, after[w].PID, after[w].Restarts, beforeA[w].PID, beforeA[w].Restarts)
		}
	}
	if st, err := b.statuses(); err != nil {
		t.Fatal(err)
	} else if err := sameRun(b.name, beforeB, st); err != nil {
		t.Errorf("node %s, never cut: %v", b.name, err)
	}
	want := map[string][]int{"keep": {after["keep"].PID}, "change": {after["change"].PID}, "fresh": {after["fresh"].PID}}
	placed = f.placement()
	for w, pids := range want {
		if len(placed[w]) != 1 || !slices.Equal(placed[w][a.name], pids) {
			t.Errorf("%s runs as %v; want only %v on %s", w, placed[w], pids, a.name)
		}
	}
	if len(placed["gone"]) != 0 {
		t.Errorf("deleted workload gone still runs: %v", placed["gone"])
	}
	if st := a.statusJSON(); slices.Contains(sortedKeys(st), "gone") {
		t.Errorf("node status on %s still lists gone: %v", a.name, sortedKeys(st))
	}
	// The hub recorded the silence and the reconnection.
	f.waitFor(0, func() error {
		evs, err := f.hubEvents(a.name)
		if err != nil {
			return err
		}
		var types []string
		for _, e := range evs {
			if e.Type == "node-connected" || e.Type == "node-disconnected" {
				types = append(types, e.Type)
			}
		}
		// Connected, silent, back (a heartbeat delayed past the timeout on
		// a loaded machine may add a pair, which is not wrong).
		if len(types) < 3 || types[0] != "node-connected" || types[1] != "node-disconnected" || types[len(types)-1] != "node-connected" {
			return fmt.Errorf("hub's connection events for %s: %v; want node-connected, node-disconnected, ..., node-connected:%s",
				a.name, types, briefEvents(evs))
		}
		return nil
	})
	f.logf("fresh runs, change restarted with VERSION=2, gone is gone, keep untouched")
}

// commandLine is what `atoll restart workload` prints.
var commandLine = regexp.MustCompile(`^command/(c[0-9a-f]+) (queued|already queued) for node (\S+) \(expires [^)]+\)\n$`)

// restartCmd runs `atoll restart workload` and returns the command id and
// whether it was queued now.
func (f *fleet) restartCmd(n *node, workload string, flags ...string) (id string, queued bool) {
	f.t.Helper()
	r := f.mustCLI(append([]string{"restart", "workload", workload, "--node", n.name}, flags...)...)
	m := commandLine.FindStringSubmatch(r.stdout)
	if m == nil || m[3] != n.name {
		f.t.Fatalf("atoll restart workload %s: %s; want %s", workload, r, commandLine)
	}
	return m[1], m[2] == "queued"
}

// commands lists the hub's commands for n by id.
func (f *fleet) commands(n *node) (map[string]api.Command, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmds, err := f.hub.Commands(ctx, n.name)
	if err != nil {
		return nil, err
	}
	m := map[string]api.Command{}
	for _, c := range cmds {
		m[c.ID] = c
	}
	return m, nil
}

// TestFleet_QueuedCommandRunsOnceAfterReconnect checks the one-off
// commands of DESIGN invariant 5: a restart queued (twice, with one
// idempotency key) for a node whose link is cut is carried out exactly once
// after the link is back; a command whose TTL passes while the node is away
// is never carried out and shows as expired.
func TestFleet_QueuedCommandRunsOnceAfterReconnect(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "")
	f.apply([]wl{{name: "worker", nodes: []string{a.name}}, {name: "idle", nodes: []string{a.name}}},
		"workload/worker created (1 node)", "workload/idle created (1 node)")
	before := a.waitRunning("worker", "idle")
	f.waitSynced(f.begin, a)
	seq := lastSeq(a.events())
	f.logf("worker (pid %d) and idle (pid %d) running on %s", before["worker"].PID, before["idle"].PID, a.name)

	tCut := a.cut()
	f.logf("link of %s cut", a.name)
	id1, queued := f.restartCmd(a, "worker", "--idempotency-key", "k1")
	if !queued {
		t.Fatalf("first restart with key k1 was not queued anew")
	}
	id2, queued := f.restartCmd(a, "worker", "--idempotency-key", "k1")
	if queued || id2 != id1 {
		t.Fatalf("second restart with key k1: command %s (queued now: %v); want %s already queued", id2, queued, id1)
	}
	idExp, _ := f.restartCmd(a, "idle", "--idempotency-key", "k2", "--ttl", "1s")
	f.logf("queued restart %s of worker (twice, key k1) and %s of idle (ttl 1s)", id1, idExp)
	cmds, err := f.commands(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 2 || cmds[id1].State != "queued" || cmds[id1].Workload != "worker" || cmds[idExp].Workload != "idle" {
		t.Fatalf("hub's commands for %s: %+v; want %s (worker) queued and %s (idle)", a.name, cmds, id1, idExp)
	}
	// Keep the link cut until the short command is past its expiry.
	f.waitFor(0, func() error {
		cmds, err := f.commands(a)
		if err != nil {
			return err
		}
		if c := cmds[idExp]; c.State != "expired" {
			return fmt.Errorf("command %s is %s (expires %v)", idExp, c.State, c.Expires)
		}
		return nil
	})
	if st, err := a.statuses(); err != nil {
		t.Fatal(err)
	} else if err := sameRun(a.name, before, st); err != nil {
		t.Fatalf("while cut, before any command could arrive: %v", err)
	}
	f.logf("idle's command shows expired at the hub (%s after the cut); nothing restarted yet", since(tCut))

	tRestore := time.Now()
	a.proxy.Restore()
	f.logf("link restored")
	var restarted wire.WorkloadStatus
	f.waitFor(0, func() error {
		st, err := a.statuses()
		if err != nil {
			return err
		}
		if s := st["worker"]; !running(s) || s.PID == before["worker"].PID {
			return fmt.Errorf("worker not restarted yet: %+v", s)
		}
		restarted = st["worker"]
		return nil
	})
	f.logf("worker restarted: pid %d -> %d (%s after restore)", before["worker"].PID, restarted.PID, since(tRestore))
	// The hub learns it was done; then let several more heartbeats pass
	// (each of which would carry the command again, were it still queued).
	var tDone time.Time
	f.waitFor(0, func() error {
		cmds, err := f.commands(a)
		if err != nil {
			return err
		}
		if c := cmds[id1]; c.State != "done" {
			return fmt.Errorf("command %s is %s", id1, c.State)
		}
		tDone = time.Now()
		return nil
	})
	f.logf("hub shows command %s done", id1)
	// A retry with the same key after it was done is the same command.
	if id3, queued := f.restartCmd(a, "worker", "--idempotency-key", "k1"); queued || id3 != id1 {
		t.Errorf("restart with key k1 after it was done: %s (queued now: %v); want %s already queued", id3, queued, id1)
	}
	f.waitFor(0, func() error {
		n, err := f.hubNodes()
		if err != nil {
			return err
		}
		if ls := n[a.name].LastSeen; ls.Sub(tDone) < 10*heartbeat {
			return fmt.Errorf("last contact %v, not yet 10 heartbeats after the command was done (%v)", ls, tDone)
		}
		return nil
	})
	f.logf("10 more heartbeats passed")

	st, err := a.statuses()
	if err != nil {
		t.Fatal(err)
	}
	if st["worker"].PID != restarted.PID || !procfs.Alive(restarted.PID) || procfs.Alive(before["worker"].PID) {
		t.Errorf("worker is pid %d; want still %d (restarted once), old %d gone", st["worker"].PID, restarted.PID, before["worker"].PID)
	}
	if st["idle"].PID != before["idle"].PID {
		t.Errorf("idle restarted (pid %d -> %d) by a command that had expired", before["idle"].PID, st["idle"].PID)
	}
	evs := eventsAfter(a.events(), seq)
	if c := countEvents(evs, "worker", "command"); c != 1 {
		t.Errorf("%d command events for worker; want exactly 1:%s", c, briefEvents(evs))
	}
	if c := countEvents(evs, "worker", "started"); c != 1 {
		t.Errorf("worker started %d times after the cut; want exactly once:%s", c, briefEvents(evs))
	}
	if c := countEvents(evs, "idle", "command") + countEvents(evs, "idle", "started"); c != 0 {
		t.Errorf("idle has command or started events after the cut:%s", briefEvents(evs))
	}
	if pids := f.placement()["worker"][a.name]; !slices.Equal(pids, []int{restarted.PID}) {
		t.Errorf("worker processes %v; want only %d", pids, restarted.PID)
	}
	// The expired command: expired at the hub, with an event there or on
	// the node.
	cmds, err = f.commands(a)
	if err != nil {
		t.Fatal(err)
	}
	if cmds[idExp].State != "expired" || cmds[id1].State != "done" {
		t.Errorf("commands: %s is %s, %s is %s; want expired and done", idExp, cmds[idExp].State, id1, cmds[id1].State)
	}
	hubEvs := decode[[]wire.Event](t, f.mustCLI("events", "--node", a.name, "-o", "json"))
	expiredEvent := countEvents(evs, "idle", "command-expired")
	for _, e := range hubEvs {
		if e.Type == "command-expired" && e.Workload == "idle" && strings.Contains(e.Message, idExp) {
			expiredEvent++
		}
	}
	if expiredEvent == 0 {
		t.Errorf("no command-expired event for %s, at the hub or on the node:%s", idExp, briefEvents(hubEvs))
	}
	if c := countEvents(hubEvs, "worker", "command"); c != 1 {
		t.Errorf("the hub has %d command events for worker; want 1:%s", c, briefEvents(hubEvs))
	}
	f.logf("one command event, one restart, the expired command dropped with an event")
}

// TestFleet_LogsThroughHub checks `atoll logs NODE WORKLOAD`: the hub
// fetches the lines from the node while it is connected, and answers at
// once, without asking, once the node shows disconnected.
func TestFleet_LogsThroughHub(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "")
	f.apply([]wl{{name: "talker", nodes: []string{a.name}, script: "echo line-1; echo line-2; echo line-3; exec sleep 3600"}},
		"workload/talker created (1 node)")
	a.waitRunning("talker")
	f.waitSynced(f.begin, a)
	var r result
	f.waitFor(0, func() error {
		r = f.cli("logs", a.name, "talker", "--tail", "2")
		if r.code != 0 || r.stdout != "line-2\nline-3\n" {
			return fmt.Errorf("atoll logs: %s", r)
		}
		return nil
	})
	f.logf("atoll logs --tail 2 printed the last two lines through the hub (%s)", r.took.Round(time.Millisecond))
	if r := f.cli("logs", a.name, "nope"); r.code != 1 || !strings.Contains(r.stderr, "nope") {
		t.Errorf("atoll logs of an unknown workload: %s; want exit 1 naming it", r)
	}

	tCut := a.cut()
	hn := f.waitHubState(a, api.NodeDisconnected, api.NodeConnected)
	f.logf("link cut; hub shows %s disconnected (%s)", a.name, since(tCut))
	r = f.cli("logs", a.name, "talker", "--tail", "2")
	want := fmt.Sprintf("node %s disconnected since ", a.name)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, want) {
		t.Errorf("atoll logs of a disconnected node: %s; want exit 1 and %q", r, want)
	}
	// Promptly: the hub answers from what it knows; asking the node would
	// take its 5 s timeout.
	if r.took > 3*time.Second {
		t.Errorf("atoll logs of a disconnected node took %v; want an answer at once", r.took)
	}
	if !strings.Contains(r.stderr, hn.LastSeen.UTC().Format("2006-01-02T15:04:05")) {
		t.Errorf("atoll logs error %q does not name the last contact %v", r.stderr, hn.LastSeen)
	}
	f.logf("atoll logs failed in %s: %s", r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))

	a.proxy.Restore()
	tRestore := time.Now()
	f.waitSynced(tRestore, a)
	if r := f.cli("logs", a.name, "talker", "--tail", "1"); r.code != 0 || r.stdout != "line-3\n" {
		t.Errorf("atoll logs after the link is back: %s", r)
	}
	f.logf("link restored; logs work again (%s)", since(tRestore))
}

// TestFleet_OutboxOverflowIsCountedAndReported checks the end of DESIGN
// invariant 6: when an outage outlasts a node's outbox (--event-retention),
// the oldest events go first, and the hub learns how many it never got:
// one events-dropped event with the count, and every kept event once.
func TestFleet_OutboxOverflowIsCountedAndReported(t *testing.T) {
	const retention = 10
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "", "--event-retention", fmt.Sprint(retention))
	f.apply([]wl{{name: "app", nodes: []string{a.name}}}, "workload/app created (1 node)")
	a.waitRunning("app")
	f.waitSynced(f.begin, a)
	var delivered uint64
	f.waitFor(0, func() error {
		evs, err := f.hubEvents(a.name)
		if err != nil {
			return err
		}
		if delivered = lastSeq(evs); delivered != lastSeq(a.events()) {
			return fmt.Errorf("the hub has events up to %d of %s, the node up to %d", delivered, a.name, lastSeq(a.events()))
		}
		return nil
	})

	a.cut()
	f.logf("link of %s cut with every event delivered (up to %d)", a.name, delivered)
	// Each restart records events; go on until the outbox overflowed.
	for restarts := 0; lastSeq(a.events()) < delivered+2*retention; restarts++ {
		if restarts > 50 {
			t.Fatalf("50 restarts recorded only %d events", lastSeq(a.events())-delivered)
		}
		a.mustCLI("restart", "app")
	}
	kept := a.events()
	if len(kept) != retention || kept[0].Seq <= delivered+1 {
		t.Fatalf("offline the node keeps %d events from %d; want %d and some dropped", len(kept), kept[0].Seq, retention)
	}
	f.logf("offline: events %d..%d recorded, %d..%d kept", delivered+1, lastSeq(kept), kept[0].Seq, lastSeq(kept))

	a.proxy.Restore()
	// Once the hub has all the node has, every seq after the cut is at
	// the hub exactly once or was dropped, and one events-dropped event
	// counts exactly the dropped ones.
	var report wire.Event
	f.waitFor(0, func() error {
		evs, err := f.hubEvents(a.name)
		if err != nil {
			return err
		}
		if last := lastSeq(a.events()); lastSeq(evs) != last {
			return fmt.Errorf("the hub has events up to %d, the node up to %d", lastSeq(evs), last)
		}
		got := map[uint64]int{}
		reports := 0
		for _, e := range evs {
			got[e.Seq]++
			if e.Type == "events-dropped" {
				report = e
				reports++
			}
		}
		if reports != 1 {
			return fmt.Errorf("%d events-dropped events at the hub; want 1", reports)
		}
		missing := 0
		for seq := delivered + 1; seq <= lastSeq(evs); seq++ {
			switch got[seq] {
			case 0:
				missing++
			case 1:
			default:
				t.Fatalf("the hub has event %d of %s %d times", seq, a.name, got[seq])
			}
		}
		want := fmt.Sprintf("%d events the hub had not received were dropped", missing)
		if !strings.HasPrefix(report.Message, want) {
			t.Fatalf("events-dropped says %q; want it to start %q", report.Message, want)
		}
		return nil
	})
	f.logf("the hub has every kept event once and one report: %s", report.Message)
}
