package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/settle"
	"atoll.dev/atoll/internal/wire"
)

// The node's desired state is the hub's plan (store value "plan") merged
// with the local overrides (the store's workloads bucket, one record per
// override, keyed by overrideKey) by package settle. A node without a hub
// has no plan, so its overrides are its whole desired state.

const keyPlan = "plan"

// overrideKey is where an override lives in the store: the workload name
// for a whole-workload override, "name/path" for a field.
func overrideKey(ov wire.Override) string {
	if ov.Path == "" {
		return ov.Workload
	}
	return ov.Workload + "/" + ov.Path
}

func (a *Agent) loadPlan() (*wire.Plan, error) {
	b, err := a.store.Value(keyPlan)
	if err != nil || b == nil {
		return nil, err
	}
	var p wire.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode stored plan: %w", err)
	}
	return &p, nil
}

// loadOverrides reads the stored overrides. A record that is a plain
// workload document was written before overrides existed (a node on its
// own): it reads as a whole-workload override.
func (a *Agent) loadOverrides() (map[string]wire.Override, map[string][]byte, error) {
	docs, err := a.store.Workloads()
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]wire.Override, len(docs))
	for key, doc := range docs {
		var probe struct {
			APIVersion string `json:"apiVersion"`
		}
		if err := json.Unmarshal(doc, &probe); err != nil {
			return nil, nil, fmt.Errorf("decode stored override %s: %w", key, err)
		}
		if probe.APIVersion != "" {
			out[key] = wire.Override{ID: "local-" + key, Workload: key, Value: doc, Priority: wire.OverridePriority}
			continue
		}
		var ov wire.Override
		if err := json.Unmarshal(doc, &ov); err != nil {
			return nil, nil, fmt.Errorf("decode stored override %s: %w", key, err)
		}
		out[key] = ov
	}
	return out, docs, nil
}

// restore brings the node to its stored desired state at start: the
// supervisor adopts what still runs and starts the rest.
func (a *Agent) restore(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	plan, err := a.loadPlan()
	if err != nil {
		return err
	}
	ovs, _, err := a.loadOverrides()
	if err != nil {
		return err
	}
	// Start the clock after everything the node has stamped or seen.
	var last hlc.Timestamp
	if plan != nil {
		a.stored.Store(plan.Revision)
		last = plan.Stamp
	}
	for _, ov := range ovs {
		if last.Before(ov.Stamp) {
			last = ov.Stamp
		}
	}
	a.hlc = hlc.New(clock.Real{}, last)
	return a.converge(ctx)
}

// converge settles plan and overrides, stores what settlement changed,
// records every settlement as an event and hands the result to the
// supervisor. The caller holds a.mu.
func (a *Agent) converge(ctx context.Context) error {
	plan, err := a.loadPlan()
	if err != nil {
		return err
	}
	stored, raw, err := a.loadOverrides()
	if err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(stored))
	ovs := make([]wire.Override, 0, len(keys))
	for _, k := range keys {
		ovs = append(ovs, stored[k])
	}
	res, err := settle.Settle(plan, ovs)
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, ov := range res.Overrides {
		key := overrideKey(ov)
		kept[key] = true
		doc, err := json.Marshal(ov)
		if err != nil {
			return err
		}
		if !bytes.Equal(doc, raw[key]) {
			if _, err := a.store.PutWorkload(key, doc); err != nil {
				return err
			}
		}
	}
	for _, k := range keys {
		if !kept[k] {
			if _, err := a.store.DeleteWorkload(k); err != nil {
				return err
			}
		}
	}
	for _, s := range res.Settlements {
		a.event(s.Override.Workload, "settled", s.Message())
	}
	ws := make([]supervisor.Workload, 0, len(res.Workloads))
	eff := make(map[string]manifest.Workload, len(res.Workloads))
	images := planImages(plan)
	secrets := planSecrets(plan)
	var forward []string
	for _, w := range res.Workloads {
		sw := supervisor.Workload{Name: w.Metadata.Name, Spec: w.Spec, Image: imageOf(w, images)}
		if pw, ok := secrets[w.Metadata.Name]; ok {
			sw.Secrets, sw.SecretsBlocked = pw.Secrets, pw.SecretsBlocked
		}
		ws = append(ws, sw)
		eff[w.Metadata.Name] = w
		forward = append(forward, w.Spec.Forward...)
	}
	// Capture before the workloads start, so their first messages are
	// kept. A failure leaves the previous subjects and is retried with the
	// next change; it does not hold the workloads back.
	if a.broker != nil {
		if err := a.broker.SetSubjects(ctx, forward); err != nil {
			a.log.Error("outbox subjects", "err", err)
		}
	}
	if err := a.sup.Sync(ctx, ws); err != nil {
		return err
	}
	a.effective, a.overrides, a.images = eff, res.Overrides, images
	if plan != nil {
		a.applied.Store(plan.Revision)
	}
	a.signalChanged()
	return nil
}

// Apply records local workloads (as overrides of the hub's intent when
// there is a hub) and converges.
func (a *Agent) Apply(ctx context.Context, ws []manifest.Workload, ch localapi.Change) ([]localapi.ApplyResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	plan, err := a.loadPlan()
	if err != nil {
		return nil, err
	}
	current, _, err := a.loadOverrides()
	if err != nil {
		return nil, err
	}
	before := make(map[string][]byte, len(a.effective))
	for name, w := range a.effective {
		before[name], _ = json.Marshal(w)
	}
	for _, w := range ws {
		w.Source = ""
		doc, err := json.Marshal(w)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", w.Metadata.Name, err)
		}
		name := w.Metadata.Name
		if ov, ok := current[name]; ok && !ov.Deleted && bytes.Equal(ov.Value, doc) {
			continue // the same local change again
		}
		base, err := settle.ValueAt(plan, name, "")
		if err != nil {
			return nil, err
		}
		if _, ok := current[name]; !ok && bytes.Equal(base, doc) {
			continue // the hub already says exactly this
		}
		if err := a.putOverride(wire.Override{Workload: name, Value: doc, Base: base}, ch); err != nil {
			return nil, err
		}
	}
	if err := a.converge(ctx); err != nil {
		return nil, err
	}
	results := make([]localapi.ApplyResult, 0, len(ws))
	for _, w := range ws {
		name := w.Metadata.Name
		after, _ := json.Marshal(a.effective[name])
		action := localapi.ActionUnchanged
		if old, ok := before[name]; !ok {
			action = localapi.ActionCreated
		} else if !bytes.Equal(old, after) {
			action = localapi.ActionConfigured
		}
		results = append(results, localapi.ApplyResult{Name: name, Action: action})
	}
	return results, nil
}

// Delete removes a workload from the node: a workload the hub's plan has is
// overridden as deleted; a local one is forgotten. The workload is stopped
// before Delete returns.
func (a *Agent) Delete(ctx context.Context, name string, ch localapi.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.effective[name]; !ok {
		return fmt.Errorf("delete %s: %w", name, supervisor.ErrWorkloadNotFound)
	}
	plan, err := a.loadPlan()
	if err != nil {
		return err
	}
	base, err := settle.ValueAt(plan, name, "")
	if err != nil {
		return err
	}
	if base != nil {
		err = a.putOverride(wire.Override{Workload: name, Deleted: true, Base: base}, ch)
	} else {
		err = a.forgetLocal(name)
	}
	if err != nil {
		return err
	}
	return a.converge(ctx)
}

// forgetLocal drops every override of a workload the hub does not have.
func (a *Agent) forgetLocal(name string) error {
	current, _, err := a.loadOverrides()
	if err != nil {
		return err
	}
	for key, ov := range current {
		if ov.Workload == name {
			if _, err := a.store.DeleteWorkload(key); err != nil {
				return err
			}
		}
	}
	return nil
}

// Set overrides environment variables of a workload.
func (a *Agent) Set(ctx context.Context, name string, env map[string]string, unset []string, ch localapi.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.effective[name]; !ok {
		return fmt.Errorf("set %s: %w", name, supervisor.ErrWorkloadNotFound)
	}
	plan, err := a.loadPlan()
	if err != nil {
		return err
	}
	change := func(key string, ov wire.Override) error {
		ov.Workload, ov.Path = name, settle.EnvPrefix+key
		base, err := settle.ValueAt(plan, name, ov.Path)
		if err != nil {
			return err
		}
		ov.Base = base
		return a.putOverride(ov, ch)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v, _ := json.Marshal(env[k])
		if err := change(k, wire.Override{Value: v}); err != nil {
			return err
		}
	}
	for _, k := range unset {
		if err := change(k, wire.Override{Deleted: true}); err != nil {
			return err
		}
	}
	return a.converge(ctx)
}

// putOverride stamps ov and stores it, replacing any override of the same
// field.
func (a *Agent) putOverride(ov wire.Override, ch localapi.Change) error {
	ov.ID = newID()
	ov.Stamp = a.hlc.Now()
	ov.Priority = ch.Priority
	if ov.Priority == 0 {
		ov.Priority = wire.OverridePriority
	}
	doc, err := json.Marshal(ov)
	if err != nil {
		return err
	}
	_, err = a.store.PutWorkload(overrideKey(ov), doc)
	return err
}

// storePlan stores a plan from the hub, then converges to it.
func (a *Agent) storePlan(ctx context.Context, p *wire.Plan) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.Revision <= a.stored.Load() {
		return nil // a replay or an old plan: nothing to do
	}
	a.hlc.Observe(p.Stamp)
	for _, pw := range p.Workloads {
		a.hlc.Observe(pw.Stamp)
	}
	doc, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := a.store.PutDesired(keyPlan, doc); err != nil {
		return err
	}
	a.stored.Store(p.Revision)
	a.event("", "plan-stored", fmt.Sprintf("stored plan revision %d (%d workloads)", p.Revision, len(p.Workloads)))
	if err := a.converge(ctx); err != nil {
		// Stored is what the hub needs to know; convergence is retried at
		// the next plan or local change and reported through status.
		a.log.Error("converge to plan", "revision", p.Revision, "err", err)
	}
	return nil
}

func (a *Agent) event(workload, typ, msg string) {
	if _, err := a.store.AppendEvent(store.Event{Time: time.Now(), Workload: workload, Type: typ, Message: msg}); err != nil {
		a.log.Error("record event", "type", typ, "err", err)
	}
	a.log.Info(msg, "workload", workload, "event", typ)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
