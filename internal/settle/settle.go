// Package settle merges a node's plan with its local overrides into the
// workloads the node runs, by the fixed rules of DESIGN.md invariant 7: an
// override stands until the hub changes the same field; then the higher
// priority wins, and at equal priority the later hybrid-logical-clock stamp.
// Every conflict settled is reported, so the agent can record it as an
// event. Settle is pure: no clock, no I/O.
package settle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// EnvPrefix starts the path of an environment-variable override.
const EnvPrefix = "env."

// Settlement is one conflict between an override and a hub change.
type Settlement struct {
	Override wire.Override
	// LocalWins is true when the override stays in force.
	LocalWins bool
	// Why says which rule decided, e.g. "priority 200 > hub 100".
	Why string
}

// Message describes the settlement for an event.
func (s Settlement) Message() string {
	field := "the whole workload"
	if s.Override.Path != "" {
		field = s.Override.Path
	}
	winner := "the hub's change wins; the local override is dropped"
	if s.LocalWins {
		winner = "the local override wins"
	}
	return fmt.Sprintf("conflict on %s of %s: %s (%s)", field, s.Override.Workload, winner, s.Why)
}

// Result is the outcome of Settle.
type Result struct {
	// Workloads are what the node should run, sorted by name.
	Workloads []manifest.Workload
	// Overrides are the overrides still in force; an override that won a
	// conflict has its Base moved to the hub's new value.
	Overrides []wire.Override
	// Settlements lists the conflicts decided, in override order.
	Settlements []Settlement
}

// Settle applies overrides to plan (nil plan: a node with no hub, where
// overrides are the whole desired state).
func Settle(plan *wire.Plan, overrides []wire.Override) (Result, error) {
	hub := map[string]wire.PlanWorkload{}
	var planStamp hlc.Timestamp
	if plan != nil {
		planStamp = plan.Stamp
		for _, pw := range plan.Workloads {
			hub[pw.Workload.Metadata.Name] = pw
		}
	}
	eff := map[string]manifest.Workload{}
	for name, pw := range hub {
		eff[name] = pw.Workload
	}
	ordered := append([]wire.Override(nil), overrides...)
	// Whole-workload overrides first, so a field override lands on the
	// workload as the node will run it.
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Path == "" && ordered[j].Path != "" })

	var res Result
	for _, ov := range ordered {
		pw, inPlan := hub[ov.Workload]
		hubVal, err := valueAt(pw, inPlan, ov.Path)
		if err != nil {
			return Result{}, err
		}
		if !sameJSON(hubVal, ov.Base) {
			hubStamp, hubPrio := planStamp, wire.HubPriority
			if inPlan {
				hubStamp = pw.Stamp
				if fs, ok := pw.FieldStamps[ov.Path]; ok && ov.Path != "" {
					hubStamp = fs
				}
				if pw.Priority != 0 {
					hubPrio = pw.Priority
				}
			}
			local, why := decide(ov, hubPrio, hubStamp)
			res.Settlements = append(res.Settlements, Settlement{Override: ov, LocalWins: local, Why: why})
			if !local {
				continue
			}
			ov.Base = hubVal
		}
		if err := apply(eff, ov); err != nil {
			return Result{}, err
		}
		res.Overrides = append(res.Overrides, ov)
	}
	for _, w := range eff {
		res.Workloads = append(res.Workloads, w)
	}
	sort.Slice(res.Workloads, func(i, j int) bool { return res.Workloads[i].Metadata.Name < res.Workloads[j].Metadata.Name })
	return res, nil
}

// decide settles a conflict: higher priority, then later stamp; a tie goes
// to the hub.
func decide(ov wire.Override, hubPrio int, hubStamp hlc.Timestamp) (localWins bool, why string) {
	switch {
	case ov.Priority > hubPrio:
		return true, fmt.Sprintf("priority %d > hub %d", ov.Priority, hubPrio)
	case ov.Priority < hubPrio:
		return false, fmt.Sprintf("priority %d < hub %d", ov.Priority, hubPrio)
	case hubStamp.Before(ov.Stamp):
		return true, fmt.Sprintf("equal priority %d, local change later (%v > %v)", hubPrio, ov.Stamp, hubStamp)
	}
	return false, fmt.Sprintf("equal priority %d, hub change later or same time (%v >= %v)", hubPrio, hubStamp, ov.Stamp)
}

// ValueAt returns the hub's value of path in the named workload of plan, as
// JSON (nil when absent): what a new override records as its Base.
func ValueAt(plan *wire.Plan, workload, path string) ([]byte, error) {
	if plan != nil {
		for _, pw := range plan.Workloads {
			if pw.Workload.Metadata.Name == workload {
				return valueAt(pw, true, path)
			}
		}
	}
	return nil, nil
}

func valueAt(pw wire.PlanWorkload, ok bool, path string) ([]byte, error) {
	if !ok {
		return nil, nil
	}
	if path == "" {
		return json.Marshal(pw.Workload)
	}
	key, isEnv := strings.CutPrefix(path, EnvPrefix)
	if !isEnv {
		return nil, fmt.Errorf("settle: unknown override path %q", path)
	}
	v, found := envOf(pw.Workload)[key]
	if !found {
		return nil, nil
	}
	return json.Marshal(v)
}

// apply puts an override into the effective workloads.
func apply(eff map[string]manifest.Workload, ov wire.Override) error {
	if ov.Path == "" {
		if ov.Deleted {
			delete(eff, ov.Workload)
			return nil
		}
		var w manifest.Workload
		if err := json.Unmarshal(ov.Value, &w); err != nil {
			return fmt.Errorf("settle: override %s: %w", ov.ID, err)
		}
		eff[ov.Workload] = w
		return nil
	}
	key := strings.TrimPrefix(ov.Path, EnvPrefix)
	w, ok := eff[ov.Workload]
	if !ok {
		return nil // nothing to set the variable on; the override waits
	}
	w = cloneWorkload(w)
	env := ensureEnv(w)
	if env == nil {
		return nil // no runtime section: cannot happen after Normalize
	}
	if ov.Deleted {
		delete(env, key)
	} else {
		var v string
		if err := json.Unmarshal(ov.Value, &v); err != nil {
			return fmt.Errorf("settle: override %s: %w", ov.ID, err)
		}
		env[key] = v
	}
	eff[ov.Workload] = w
	return nil
}

// Env returns the environment variables of w's runtime section (nil when
// it has none): the fields an env override addresses.
func Env(w manifest.Workload) map[string]string { return envOf(w) }

// envOf returns the env map of w's runtime section, nil when it has none.
func envOf(w manifest.Workload) map[string]string {
	switch {
	case w.Spec.Exec != nil:
		return w.Spec.Exec.Env
	case w.Spec.WASM != nil:
		return w.Spec.WASM.Env
	case w.Spec.Container != nil:
		return w.Spec.Container.Env
	}
	return nil
}

// ensureEnv returns the env map of w's runtime section, creating it; w
// must be a copy the caller owns.
func ensureEnv(w manifest.Workload) map[string]string {
	switch {
	case w.Spec.Exec != nil:
		if w.Spec.Exec.Env == nil {
			w.Spec.Exec.Env = map[string]string{}
		}
	case w.Spec.WASM != nil:
		if w.Spec.WASM.Env == nil {
			w.Spec.WASM.Env = map[string]string{}
		}
	case w.Spec.Container != nil:
		if w.Spec.Container.Env == nil {
			w.Spec.Container.Env = map[string]string{}
		}
	}
	return envOf(w)
}

// cloneWorkload deep-copies w so the plan's workloads are never modified.
func cloneWorkload(w manifest.Workload) manifest.Workload {
	b, err := json.Marshal(w)
	if err != nil {
		panic(fmt.Sprintf("settle: marshal workload: %v", err)) // manifest types always marshal
	}
	var out manifest.Workload
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("settle: unmarshal workload: %v", err))
	}
	out.Source = w.Source
	return out
}

func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
