package settle_test

import (
	"encoding/json"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/settle"
	"atoll.dev/atoll/internal/wire"
)

func workload(name string, env map[string]string) manifest.Workload {
	return manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: name},
		Spec:     manifest.WorkloadSpec{Runtime: manifest.RuntimeExec, Exec: &manifest.ExecSpec{Command: []string{"app"}, Env: env}}}
}

func stamp(n int64) hlc.Timestamp { return hlc.Timestamp{Wall: n} }

func plan(stampAt int64, ws ...manifest.Workload) *wire.Plan {
	p := &wire.Plan{Node: "n1", Revision: 1, Stamp: stamp(stampAt)}
	for _, w := range ws {
		p.Workloads = append(p.Workloads, wire.PlanWorkload{Workload: w, Stamp: stamp(stampAt)})
	}
	return p
}

func js(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envOverride is what `atoll node set web --env K=V` records against p.
func envOverride(t *testing.T, p *wire.Plan, key, val string, prio int, at int64) wire.Override {
	t.Helper()
	base, err := settle.ValueAt(p, "web", settle.EnvPrefix+key)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Override{ID: "o1", Workload: "web", Path: settle.EnvPrefix + key, Value: js(t, val), Base: base, Priority: prio, Stamp: stamp(at)}
}

func envOfResult(t *testing.T, r settle.Result, name string) map[string]string {
	t.Helper()
	for _, w := range r.Workloads {
		if w.Metadata.Name == name {
			return w.Spec.Exec.Env
		}
	}
	t.Fatalf("%s not in result %+v", name, r.Workloads)
	return nil
}

func mustSettle(t *testing.T, p *wire.Plan, ovs ...wire.Override) settle.Result {
	t.Helper()
	r, err := settle.Settle(p, ovs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSettle_NoHubOverridesAreTheDesiredState(t *testing.T) {
	ov := wire.Override{ID: "a", Workload: "web", Value: js(t, workload("web", nil)), Priority: wire.OverridePriority}
	r := mustSettle(t, nil, ov)
	if len(r.Workloads) != 1 || r.Workloads[0].Metadata.Name != "web" || len(r.Settlements) != 0 || len(r.Overrides) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestSettle_OverrideStandsWhileHubLeavesFieldAlone(t *testing.T) {
	p := plan(10, workload("web", map[string]string{"LEVEL": "info"}))
	ov := envOverride(t, p, "LEVEL", "debug", wire.OverridePriority, 20)
	r := mustSettle(t, p, ov)
	if got := envOfResult(t, r, "web")["LEVEL"]; got != "debug" || len(r.Settlements) != 0 {
		t.Fatalf("LEVEL = %q, settlements %+v", got, r.Settlements)
	}
	// The plan itself is never modified.
	if p.Workloads[0].Workload.Spec.Exec.Env["LEVEL"] != "info" {
		t.Fatal("Settle modified the plan")
	}
	// Another hub change to a different field is no conflict either.
	p2 := plan(30, workload("web", map[string]string{"LEVEL": "info", "OTHER": "x"}))
	if r := mustSettle(t, p2, ov); envOfResult(t, r, "web")["LEVEL"] != "debug" || len(r.Settlements) != 0 {
		t.Fatalf("unrelated hub change settled: %+v", r.Settlements)
	}
}

func TestSettle_Conflicts(t *testing.T) {
	before := plan(10, workload("web", map[string]string{"LEVEL": "info"}))
	tests := []struct {
		name      string
		prio      int
		ovAt      int64 // override stamp
		hubAt     int64 // stamp of the hub's change to LEVEL
		wantLocal bool
		whyHas    string
	}{
		{"default priorities: hub wins", wire.OverridePriority, 20, 30, false, "priority 50 < hub 100"},
		{"hub wins even when the override is later", wire.OverridePriority, 40, 30, false, "priority 50 < hub 100"},
		{"higher local priority wins", 200, 20, 30, true, "priority 200 > hub 100"},
		{"equal priority, later local wins", wire.HubPriority, 40, 30, true, "local change later"},
		{"equal priority, later hub wins", wire.HubPriority, 20, 30, false, "hub change later"},
		{"equal priority and stamp: hub", wire.HubPriority, 30, 30, false, "hub change later or same time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ov := envOverride(t, before, "LEVEL", "debug", tt.prio, tt.ovAt)
			after := plan(tt.hubAt, workload("web", map[string]string{"LEVEL": "warn"}))
			r := mustSettle(t, after, ov)
			if len(r.Settlements) != 1 {
				t.Fatalf("settlements: %+v", r.Settlements)
			}
			s := r.Settlements[0]
			if s.LocalWins != tt.wantLocal || !strings.Contains(s.Why, tt.whyHas) {
				t.Errorf("settlement %+v, want local=%v why~%q", s, tt.wantLocal, tt.whyHas)
			}
			want := map[bool]string{true: "debug", false: "warn"}[tt.wantLocal]
			if got := envOfResult(t, r, "web")["LEVEL"]; got != want {
				t.Errorf("LEVEL = %q, want %q", got, want)
			}
			if !strings.Contains(s.Message(), "conflict on env.LEVEL of web") {
				t.Errorf("message %q", s.Message())
			}
			// Settling again with what survived changes nothing: replays are
			// idempotent and a settled conflict is not reported twice.
			again := mustSettle(t, after, r.Overrides...)
			if len(again.Settlements) != 0 || envOfResult(t, again, "web")["LEVEL"] != want {
				t.Errorf("second settle: %+v", again)
			}
		})
	}
}

func TestSettle_LocalDeleteOfHubWorkload(t *testing.T) {
	p := plan(10, workload("web", nil), workload("db", nil))
	base, _ := settle.ValueAt(p, "web", "")
	del := wire.Override{ID: "d", Workload: "web", Deleted: true, Base: base, Priority: wire.OverridePriority, Stamp: stamp(20)}
	r := mustSettle(t, p, del)
	if len(r.Workloads) != 1 || r.Workloads[0].Metadata.Name != "db" {
		t.Fatalf("local delete not applied: %+v", r.Workloads)
	}
	// The hub then changes web: the hub's change wins and web comes back.
	p2 := plan(30, workload("web", map[string]string{"V": "2"}), workload("db", nil))
	r = mustSettle(t, p2, del)
	if len(r.Workloads) != 2 || len(r.Settlements) != 1 || r.Settlements[0].LocalWins || len(r.Overrides) != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestSettle_LocalWorkloadMeetsHubWorkloadOfSameName(t *testing.T) {
	local := wire.Override{ID: "l", Workload: "web", Value: js(t, workload("web", map[string]string{"FROM": "local"})),
		Priority: wire.OverridePriority, Stamp: stamp(5)}
	p := plan(10, workload("web", map[string]string{"FROM": "hub"}))
	r := mustSettle(t, p, local)
	if len(r.Settlements) != 1 || envOfResult(t, r, "web")["FROM"] != "hub" {
		t.Fatalf("%+v", r)
	}
}

func TestSettle_EnvOverrideOnWorkloadTheHubRemoved(t *testing.T) {
	p := plan(10, workload("web", map[string]string{"LEVEL": "info"}))
	ov := envOverride(t, p, "LEVEL", "debug", wire.OverridePriority, 20)
	r := mustSettle(t, plan(30), ov)
	if len(r.Workloads) != 0 || len(r.Settlements) != 1 || r.Settlements[0].LocalWins {
		t.Fatalf("%+v", r)
	}
}

func TestSettle_BadPath(t *testing.T) {
	p := plan(10, workload("web", nil))
	if _, err := settle.Settle(p, []wire.Override{{ID: "x", Workload: "web", Path: "spec.priority"}}); err == nil {
		t.Fatal("unknown path accepted")
	}
}

// A conflict is dated by the change to its own field: a later change to
// another field of the workload does not make the hub's change "later".
func TestSettle_FieldStampDatesTheConflict(t *testing.T) {
	before := plan(10, workload("web", map[string]string{"LEVEL": "info", "MODE": "a"}))
	ov := envOverride(t, before, "LEVEL", "debug", wire.HubPriority, 30)
	// The hub changed LEVEL at 20 (before the local change at 30), then MODE at 40.
	after := plan(40, workload("web", map[string]string{"LEVEL": "warn", "MODE": "b"}))
	after.Workloads[0].FieldStamps = map[string]hlc.Timestamp{"env.LEVEL": stamp(20), "env.MODE": stamp(40)}
	r := mustSettle(t, after, ov)
	if len(r.Settlements) != 1 || !r.Settlements[0].LocalWins {
		t.Fatalf("settlements %+v, want the later local change to win", r.Settlements)
	}
	if got := envOfResult(t, r, "web")["LEVEL"]; got != "debug" {
		t.Fatalf("LEVEL = %q", got)
	}
	// Without field stamps the whole workload's stamp (40) decides.
	after.Workloads[0].FieldStamps = nil
	if r := mustSettle(t, after, ov); r.Settlements[0].LocalWins {
		t.Fatal("without field stamps the later workload stamp should win")
	}
}
