package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/settle"
)

// Apply validates ws (manifest.Normalize; its FieldErrors come back as
// they are, with nothing stored), stores each workload that is new or
// changed with a new stamp, and replans. A workload whose normalized
// manifest equals the stored one is left alone, stamp and all.
//
// Validation covers every workload before the first write; a store error
// after it can leave the workloads before the failing one applied (each
// write is atomic, the batch is not), and applying again finishes the job.
func (c *Controller) Apply(ctx context.Context, ws []manifest.Workload) ([]api.ApplyResult, error) {
	if len(ws) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "no workloads to apply")
	}
	if err := manifest.Normalize(ws); err != nil {
		return nil, err
	}
	now := c.clock.Now()
	out := make([]api.ApplyResult, len(ws))
	for i, w := range ws {
		w.Source = ""
		name := w.Metadata.Name
		action := ""
		_, _, err := c.store.Workloads.Update(ctx, name, func(cur intent.Workload, exists bool) (intent.Workload, bool, error) {
			switch {
			case !exists:
				action = api.ActionCreated
				stamp := c.hlc.Now()
				return intent.Workload{Manifest: w, Stamp: stamp, FieldStamps: fieldStamps(nil, manifest.Workload{}, w, stamp),
					Created: now, Updated: now}, true, nil
			case sameManifest(cur.Manifest, w):
				action = api.ActionUnchanged
				return cur, false, nil
			default:
				action = api.ActionConfigured
				stamp := c.hlc.Now()
				cur.FieldStamps = fieldStamps(cur.FieldStamps, cur.Manifest, w, stamp)
				cur.Manifest, cur.Stamp, cur.Updated = w, stamp, now
				return cur, true, nil
			}
		})
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", name, err)
		}
		out[i] = api.ApplyResult{Name: name, Action: action}
	}
	snap, err := c.reconcile(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	known := snap.known()
	for i, w := range ws {
		targets, _ := planner.TargetNodes(w, known)
		out[i].Targets = len(targets)
	}
	return out, nil
}

// fieldStamps dates, from old to new, every environment variable that was
// added, changed or removed with stamp; the others keep their dates.
func fieldStamps(prev map[string]hlc.Timestamp, old, new manifest.Workload, stamp hlc.Timestamp) map[string]hlc.Timestamp {
	out := maps.Clone(prev)
	if out == nil {
		out = map[string]hlc.Timestamp{}
	}
	was, is := settle.Env(old), settle.Env(new)
	for k, v := range is {
		if ov, ok := was[k]; !ok || ov != v {
			out[settle.EnvPrefix+k] = stamp
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok {
			out[settle.EnvPrefix+k] = stamp
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func sameManifest(a, b manifest.Workload) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// DeleteWorkload removes a workload from the intent and from every plan
// that has it.
func (c *Controller) DeleteWorkload(ctx context.Context, name string) error {
	for range maxReplans {
		e, err := c.store.Workloads.Get(ctx, name)
		if errors.Is(err, intent.ErrNotFound) {
			return api.Errorf(api.ErrNotFound, "workload %s not found", name)
		}
		if err != nil {
			return fmt.Errorf("delete workload %s: %w", name, err)
		}
		err = c.store.Workloads.Delete(ctx, name, e.Rev)
		if errors.Is(err, intent.ErrConflict) {
			continue // changed meanwhile: delete what is there now
		}
		if err != nil {
			return fmt.Errorf("delete workload %s: %w", name, err)
		}
		if err := c.Reconcile(ctx, nil); err != nil {
			return fmt.Errorf("delete workload %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("delete workload %s: %w", name, intent.ErrConflict)
}
