package fleet_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
)

// TestFleet_ApplyRunsOnExactlyTheTargetedNodes applies workloads placed by
// selector, by name, by both, and not at all, to a hub with three nodes,
// and checks that each runs on exactly the nodes it targets, as the hub,
// each agent and /proc see it, and that an untargeted workload says why.
func TestFleet_ApplyRunsOnExactlyTheTargetedNodes(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "site=a,role=x")
	b := f.addNode("b", "site=b,role=x")
	c := f.addNode("c", "site=b,role=y")
	f.waitSynced(f.begin, a, b, c)
	f.logf("hub and nodes %s %s %s connected", a.name, b.name, c.name)

	ws := []wl{
		{name: "by-site", selector: map[string]string{"site": "b"}},
		{name: "by-two-labels", selector: map[string]string{"site": "b", "role": "x"}},
		{name: "by-name", nodes: []string{a.name, c.name}},
		{name: "by-either", nodes: []string{a.name}, selector: map[string]string{"role": "y"}},
		{name: "by-no-match", selector: map[string]string{"site": "z"}},
		{name: "unplaced"},
	}
	want := map[string][]string{ // workload → nodes, sorted
		"by-site":       {b.name, c.name},
		"by-two-labels": {b.name},
		"by-name":       {a.name, c.name},
		"by-either":     {a.name, c.name},
		"by-no-match":   nil,
		"unplaced":      nil,
	}
	perNode := map[string][]string{} // node → workloads, sorted
	for _, w := range slices.Sorted(maps.Keys(want)) {
		for _, n := range want[w] {
			perNode[n] = append(perNode[n], w)
		}
	}
	t0 := time.Now()
	f.apply(ws,
		"workload/by-site created (2 nodes)",
		"workload/by-two-labels created (1 node)",
		"workload/by-name created (2 nodes)",
		"workload/by-either created (2 nodes)",
		"workload/by-no-match created (0 nodes)",
		"workload/unplaced created (0 nodes)")
	f.logf("applied %d workloads", len(ws))

	nodes := []*node{a, b, c}
	for _, n := range nodes {
		n.waitRunning(perNode[n.name]...)
	}
	f.waitSynced(t0, nodes...)
	f.logf("every node runs its workloads and has applied its plan (%s after apply)", since(t0))

	// The hub's view, through the CLI.
	for name, w := range f.getWorkloads() {
		exp, ok := want[name]
		if !ok {
			t.Errorf("get workloads lists %s, which was not applied", name)
			continue
		}
		var got []string
		for _, in := range w.Instances {
			got = append(got, in.Node)
			if in.NodeState != api.NodeConnected || in.State != "running" {
				t.Errorf("get workloads: %s on %s is %s/%s; want connected/running", name, in.Node, in.NodeState, in.State)
			}
		}
		if w.Targets != len(exp) || !slices.Equal(sorted(got), exp) {
			t.Errorf("get workloads: %s targets %d %v; want %d %v", name, w.Targets, got, len(exp), exp)
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("get workloads does not list %v", sortedKeys(want))
	}

	// Each agent's view, through the CLI, and the processes on the machine.
	placed := f.placement()
	for _, n := range nodes {
		st := n.statusJSON()
		if got := sortedKeys(st); !slices.Equal(got, perNode[n.name]) {
			t.Errorf("node status on %s lists %v; want %v", n.name, got, perNode[n.name])
		}
		for name, s := range st {
			pids := placed[name][n.name]
			if !running(s) || len(pids) != 1 || pids[0] != s.PID {
				t.Errorf("%s on %s: status %s pid %d; processes of it on the node: %v", name, n.name, s.State, s.PID, pids)
			}
		}
	}
	for w, byNode := range placed {
		var on []string
		for n := range byNode {
			on = append(on, n)
		}
		if exp := perWorkload(perNode, w); !slices.Equal(sorted(on), exp) {
			t.Errorf("processes of %s run on %q; want exactly %q", w, sorted(on), exp)
		}
	}
	for _, w := range []string{"by-no-match", "unplaced"} {
		if len(placed[w]) > 0 {
			t.Errorf("untargeted workload %s has processes: %v", w, placed[w])
		}
	}
	f.logf("hub, agents and /proc agree: %d processes on the nodes they target", len(f.workloadProcs()))

	r := f.mustCLI("describe", "workload", "unplaced")
	if !strings.Contains(r.stdout, "0 (no spec.placement: targets no node)") || !strings.Contains(r.stdout, "Instances:  <none>") {
		t.Errorf("describe workload unplaced does not say it targets no node and why:\n%s", r.stdout)
	}
	r = f.mustCLI("describe", "workload", "by-no-match")
	if !strings.Contains(r.stdout, "0 (spec.placement.nodeSelector site=z matches no known node)") {
		t.Errorf("describe workload by-no-match does not say its selector matches no node:\n%s", r.stdout)
	}
	r = f.mustCLI("describe", "workload", "by-name")
	for _, n := range []*node{a, c} {
		if !containsRow(r.stdout, n.name, "connected", "running") {
			t.Errorf("describe workload by-name has no row 'connected running' for %s:\n%s", n.name, r.stdout)
		}
	}
	if strings.Contains(r.stdout, b.name) {
		t.Errorf("describe workload by-name mentions %s, which it does not target:\n%s", b.name, r.stdout)
	}
	f.logf("describe says why unplaced and by-no-match target no node")
}

// perWorkload inverts perNode for one workload.
func perWorkload(perNode map[string][]string, w string) []string {
	var out []string
	for n, ws := range perNode {
		if slices.Contains(ws, w) {
			out = append(out, n)
		}
	}
	return sorted(out)
}

// containsRow reports whether some line of a table starts with first and
// has the other fields, in order.
func containsRow(out, first string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		if len(fs) == 0 || fs[0] != first {
			continue
		}
		rest := fs[1:]
		ok := true
		for _, want := range fields {
			i := slices.Index(rest, want)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+1:]
		}
		if ok {
			return true
		}
	}
	return false
}
