package control

import (
	"context"
	"errors"
	"fmt"

	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/wire"
)

// maxReplans bounds how often one node is planned again after losing a
// compare-and-set to another hub.
const maxReplans = 16

// snapshot is the intent a round of planning works from. Plans are read
// before the intent, so that a plan written from it has seen every change
// made before the plan it replaces.
type snapshot struct {
	plans     map[string]intent.Entry[wire.Plan]
	workloads []planner.Workload
	nodes     map[string]planner.Node // known nodes only
	images    map[string]wire.ImageArtifact
	secrets   map[string]intent.Secret
}

func (s *snapshot) node(name string) planner.Node {
	if n, ok := s.nodes[name]; ok {
		return n
	}
	return planner.Node{Name: name}
}

func (s *snapshot) known() []planner.Node {
	out := make([]planner.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	return out
}

// read takes a snapshot: of every plan and node when only is nil, else of
// those named.
func (c *Controller) read(ctx context.Context, only []string) (*snapshot, error) {
	s := &snapshot{plans: map[string]intent.Entry[wire.Plan]{}, nodes: map[string]planner.Node{}}
	if only == nil {
		plans, err := c.store.Plans.All(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range plans {
			s.plans[p.Key] = p
		}
	} else {
		for _, n := range only {
			p, err := c.store.Plans.Get(ctx, n)
			if err != nil && !errors.Is(err, intent.ErrNotFound) {
				return nil, err
			}
			if err == nil {
				s.plans[n] = p
			}
		}
	}
	ws, err := c.store.Workloads.All(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		s.workloads = append(s.workloads, planner.Workload{Spec: w.Value.Manifest, Stamp: w.Value.Stamp, FieldStamps: w.Value.FieldStamps})
	}
	if s.images, err = c.imageArtifacts(ctx); err != nil {
		return nil, err
	}
	if s.secrets, err = c.storedSecrets(ctx); err != nil {
		return nil, err
	}
	if only == nil {
		nodes, err := c.store.Nodes.All(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			s.nodes[n.Key] = planner.Node{Name: n.Key, Labels: n.Value.Labels}
		}
		return s, nil
	}
	for _, name := range only {
		n, err := c.store.Nodes.Get(ctx, name)
		if err != nil && !errors.Is(err, intent.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			s.nodes[name] = planner.Node{Name: name, Labels: n.Value.Labels}
		}
	}
	return s, nil
}

// Reconcile brings the plans of the named nodes (nil: of every node that
// has or needs one, known or not, connected or not) in step with the
// intent. A plan whose content changes gets the next revision and its node
// a Notify; an unchanged plan is not written.
func (c *Controller) Reconcile(ctx context.Context, only []string) error {
	_, err := c.reconcile(ctx, only)
	return err
}

func (c *Controller) reconcile(ctx context.Context, only []string) (*snapshot, error) {
	snap, err := c.read(ctx, only)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	names := only
	if names == nil {
		planned := make([]string, 0, len(snap.plans))
		for n := range snap.plans {
			planned = append(planned, n)
		}
		for _, n := range planner.Universe(snap.known(), snap.workloads, planned) {
			names = append(names, n.Name)
		}
	}
	var errs []error
	for _, n := range names {
		if err := c.replan(ctx, n, snap); err != nil {
			errs = append(errs, fmt.Errorf("plan node %s: %w", n, err))
		}
	}
	return snap, errors.Join(errs...)
}

// replan writes node's plan if its content changed, planning again from
// fresh reads when another hub wrote the plan in between.
func (c *Controller) replan(ctx context.Context, node string, snap *snapshot) error {
	for range maxReplans {
		prev, ok := snap.plans[node]
		var prevPlan *wire.Plan
		if ok {
			prevPlan = &prev.Value
		}
		content := planner.Content(snap.node(node), snap.workloads, snap.images)
		if err := c.sealSecrets(ctx, snap.node(node), content, snap.secrets); err != nil {
			return err
		}
		if prevPlan == nil && len(content) == 0 || prevPlan != nil && planner.SameContent(prevPlan.Workloads, content) {
			return nil
		}
		next, _ := planner.Next(prevPlan, node, content, c.hlc.Now())
		_, err := c.store.Plans.Put(ctx, node, next, prev.Rev)
		if errors.Is(err, intent.ErrConflict) {
			c.log.Debug("plan written concurrently; planning again", "node", node, "revision", next.Revision)
			if snap, err = c.read(ctx, []string{node}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		c.log.Info("plan changed", "node", node, "revision", next.Revision, "workloads", len(next.Workloads))
		c.notify(node, next.Revision)
		return nil
	}
	return fmt.Errorf("%d attempts: %w", maxReplans, intent.ErrConflict)
}
