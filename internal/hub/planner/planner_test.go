package planner_test

import (
	"reflect"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

func workload(t *testing.T, name string, sel map[string]string, nodes ...string) manifest.Workload {
	t.Helper()
	ws := []manifest.Workload{{
		APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: name},
		Spec: manifest.WorkloadSpec{
			Runtime:   manifest.RuntimeExec,
			Exec:      &manifest.ExecSpec{Command: []string{"/bin/true"}},
			Placement: manifest.Placement{NodeSelector: sel, Nodes: nodes},
		},
	}}
	if err := manifest.Normalize(ws); err != nil {
		t.Fatal(err)
	}
	return ws[0]
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		selector map[string]string
		labels   map[string]string
		want     bool
	}{
		{"all pairs present", map[string]string{"site": "a", "role": "kiosk"}, map[string]string{"site": "a", "role": "kiosk", "x": "y"}, true},
		{"one value differs", map[string]string{"site": "a", "role": "kiosk"}, map[string]string{"site": "a", "role": "gw"}, false},
		{"key missing", map[string]string{"site": "a"}, map[string]string{"role": "a"}, false},
		{"empty value needs the key", map[string]string{"site": ""}, map[string]string{}, false},
		{"empty value matches empty label", map[string]string{"site": ""}, map[string]string{"site": ""}, true},
		{"empty selector matches nothing", nil, map[string]string{"site": "a"}, false},
		{"no labels", map[string]string{"site": "a"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planner.Matches(tc.selector, tc.labels); got != tc.want {
				t.Fatalf("Matches(%v, %v) = %v, want %v", tc.selector, tc.labels, got, tc.want)
			}
		})
	}
}

func TestTargetNodes(t *testing.T) {
	nodes := []planner.Node{
		{Name: "a", Labels: map[string]string{"site": "p3"}},
		{Name: "b", Labels: map[string]string{"site": "p4"}},
		{Name: "c", Labels: map[string]string{"site": "p3", "role": "kiosk"}},
	}
	for _, tc := range []struct {
		name       string
		w          manifest.Workload
		want       []string
		wantReason string
	}{
		{"selector", workload(t, "w", map[string]string{"site": "p3"}), []string{"a", "c"}, ""},
		{"two-key selector", workload(t, "w", map[string]string{"site": "p3", "role": "kiosk"}), []string{"c"}, ""},
		{"nodes list, known and unknown", workload(t, "w", nil, "b", "gw-9"), []string{"b", "gw-9"}, ""},
		{"selector or name", workload(t, "w", map[string]string{"site": "p4"}, "a"), []string{"a", "b"}, ""},
		{"neither", workload(t, "w", nil), nil, planner.ReasonNoPlacement},
		{"selector matching nothing", workload(t, "w", map[string]string{"site": "p9", "a": "b"}), nil,
			"spec.placement.nodeSelector a=b,site=p9 matches no known node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := planner.TargetNodes(tc.w, nodes)
			if !reflect.DeepEqual(got, tc.want) || reason != tc.wantReason {
				t.Fatalf("TargetNodes = %v, %q; want %v, %q", got, reason, tc.want, tc.wantReason)
			}
		})
	}
}

func TestUniverse(t *testing.T) {
	known := []planner.Node{{Name: "k", Labels: map[string]string{"x": "y"}}}
	ws := []planner.Workload{{Spec: workload(t, "w", nil, "named", "k")}}
	got := planner.Universe(known, ws, []string{"old", "k"})
	want := []planner.Node{{Name: "k", Labels: map[string]string{"x": "y"}}, {Name: "named"}, {Name: "old"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Universe = %+v, want %+v", got, want)
	}
}

func names(c []wire.PlanWorkload) []string {
	out := []string{}
	for _, pw := range c {
		out = append(out, pw.Workload.Metadata.Name)
	}
	return out
}

func TestContent_SortedAndOnlyTargeting(t *testing.T) {
	ws := []planner.Workload{
		{Spec: workload(t, "zeta", map[string]string{"site": "a"}), Stamp: hlc.Timestamp{Wall: 3}},
		{Spec: workload(t, "alpha", nil, "n1"), Stamp: hlc.Timestamp{Wall: 1}},
		{Spec: workload(t, "mid", map[string]string{"site": "b"})},
		{Spec: workload(t, "none", nil)},
	}
	got := planner.Content(planner.Node{Name: "n1", Labels: map[string]string{"site": "a"}}, ws, nil)
	if n := names(got); !reflect.DeepEqual(n, []string{"alpha", "zeta"}) {
		t.Fatalf("content = %v, want [alpha zeta]", n)
	}
	if got[1].Stamp != (hlc.Timestamp{Wall: 3}) || got[1].Priority != 0 {
		t.Fatalf("zeta = stamp %v priority %d, want its workload stamp and the default priority", got[1].Stamp, got[1].Priority)
	}
	if got := planner.Content(planner.Node{Name: "n2"}, ws, nil); got == nil || len(got) != 0 {
		t.Fatalf("content for an untargeted node = %#v, want empty and not nil", got)
	}
}

// TestNext_RevisionOnlyOnChange walks a node through a sequence of intent
// and label changes and checks the revision after each.
func TestNext_RevisionOnlyOnChange(t *testing.T) {
	web := workload(t, "web", map[string]string{"site": "a"})
	web2 := web
	web2.Spec.Priority = 7
	db := workload(t, "db", nil, "n1")
	node := planner.Node{Name: "n1", Labels: map[string]string{"site": "a"}}

	steps := []struct {
		name    string
		ws      []planner.Workload
		labels  map[string]string
		wantRev uint64
		want    []string
	}{
		{"nothing targets: no plan", nil, map[string]string{"site": "a"}, 0, []string{}},
		{"first workload", []planner.Workload{{Spec: web, Stamp: hlc.Timestamp{Wall: 1}}}, map[string]string{"site": "a"}, 1, []string{"web"}},
		{"same again", []planner.Workload{{Spec: web, Stamp: hlc.Timestamp{Wall: 1}}}, map[string]string{"site": "a"}, 1, []string{"web"}},
		{"unrelated label", []planner.Workload{{Spec: web, Stamp: hlc.Timestamp{Wall: 1}}}, map[string]string{"site": "a", "x": "1"}, 1, []string{"web"}},
		{"spec change", []planner.Workload{{Spec: web2, Stamp: hlc.Timestamp{Wall: 2}}}, map[string]string{"site": "a"}, 2, []string{"web"}},
		{"second by name", []planner.Workload{{Spec: web2, Stamp: hlc.Timestamp{Wall: 2}}, {Spec: db, Stamp: hlc.Timestamp{Wall: 3}}}, map[string]string{"site": "a"}, 3, []string{"db", "web"}},
		{"label change drops web", []planner.Workload{{Spec: web2, Stamp: hlc.Timestamp{Wall: 2}}, {Spec: db, Stamp: hlc.Timestamp{Wall: 3}}}, map[string]string{"site": "b"}, 4, []string{"db"}},
		{"label change back re-targets", []planner.Workload{{Spec: web2, Stamp: hlc.Timestamp{Wall: 2}}, {Spec: db, Stamp: hlc.Timestamp{Wall: 3}}}, map[string]string{"site": "a"}, 5, []string{"db", "web"}},
		{"everything deleted", nil, map[string]string{"site": "a"}, 6, []string{}},
		{"still nothing", nil, map[string]string{"site": "a"}, 6, []string{}},
	}
	var prev *wire.Plan
	for i, s := range steps {
		node.Labels = s.labels
		stamp := hlc.Timestamp{Wall: int64(100 + i)}
		next, changed := planner.Next(prev, "n1", planner.Content(node, s.ws, nil), stamp)
		wasRev := uint64(0)
		if prev != nil {
			wasRev = prev.Revision
		}
		if next.Revision != s.wantRev || changed != (s.wantRev != wasRev) {
			t.Fatalf("%s: revision %d changed=%v, want %d (was %d)", s.name, next.Revision, changed, s.wantRev, wasRev)
		}
		if n := names(next.Workloads); !reflect.DeepEqual(n, s.want) {
			t.Fatalf("%s: workloads %v, want %v", s.name, n, s.want)
		}
		if changed && next.Stamp != stamp {
			t.Fatalf("%s: stamp %v, want the new one %v", s.name, next.Stamp, stamp)
		}
		if !changed && prev != nil && next.Stamp != prev.Stamp {
			t.Fatalf("%s: unchanged plan got a new stamp", s.name)
		}
		if next.Revision > 0 {
			p := next
			prev = &p
		}
	}
}

func TestSameContent_StampCounts(t *testing.T) {
	w := workload(t, "w", nil, "n")
	a := []wire.PlanWorkload{{Workload: w, Stamp: hlc.Timestamp{Wall: 1}}}
	b := []wire.PlanWorkload{{Workload: w, Stamp: hlc.Timestamp{Wall: 2}}}
	if planner.SameContent(a, b) {
		t.Fatal("a new spec stamp must count as a change: settlement depends on it")
	}
	if !planner.SameContent(nil, []wire.PlanWorkload{}) {
		t.Fatal("nil and empty content must be equal")
	}
	if !strings.Contains(planner.ReasonNoPlacement, "spec.placement") {
		t.Fatal("reason must name the field")
	}
}
