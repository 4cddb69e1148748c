package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/wire"
)

// StateUnknown is an instance's state before its node reported it.
const StateUnknown = "unknown"

// view is everything the read endpoints combine.
type view struct {
	workloads []intent.Entry[intent.Workload]
	nodes     map[string]intent.Node
	plans     map[string]wire.Plan
	statuses  map[string]wire.Status
}

func (c *Controller) view(ctx context.Context, withWorkloads bool) (*view, error) {
	v := &view{nodes: map[string]intent.Node{}, plans: map[string]wire.Plan{}, statuses: map[string]wire.Status{}}
	if withWorkloads {
		ws, err := c.store.Workloads.All(ctx)
		if err != nil {
			return nil, err
		}
		v.workloads = ws
	}
	nodes, err := c.store.Nodes.All(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		v.nodes[n.Key] = n.Value
	}
	plans, err := c.store.Plans.All(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		v.plans[p.Key] = p.Value
	}
	sts, err := c.store.Statuses.All(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range sts {
		v.statuses[s.Key] = s.Value
	}
	return v, nil
}

// session merges what this hub's memory, the node record and the last
// status say about a node's link.
func (c *Controller) session(name string, rec intent.Node, st wire.Status) fleet.Session {
	s, _ := c.fleet.Get(name)
	if rec.LastSeen.After(s.LastSeen) {
		s.LastSeen = rec.LastSeen
	}
	s.StoredRevision = max(s.StoredRevision, rec.StoredRevision, st.StoredRevision)
	s.AppliedRevision = max(s.AppliedRevision, rec.AppliedRevision, st.AppliedRevision)
	return s
}

func (c *Controller) node(v *view, name string, detail bool) api.Node {
	rec, st, plan := v.nodes[name], v.statuses[name], v.plans[name]
	s := c.session(name, rec, st)
	n := api.Node{
		Name: name, Labels: rec.Labels,
		State:            c.fleet.StateAt(s.LastSeen, c.clock.Now()),
		LastSeen:         s.LastSeen,
		PlanRevision:     plan.Revision,
		StoredRevision:   s.StoredRevision,
		AppliedRevision:  s.AppliedRevision,
		CapacityMemory:   rec.CapacityMemory,
		CapacityMilliCPU: rec.CapacityMilliCPU,
		Version:          rec.Version,
		Workloads:        len(plan.Workloads),
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if detail {
		n.Instances = st.Workloads
		n.Overrides = st.Overrides
	}
	return n
}

// Nodes lists every node the hub knows, seen or only named by a
// workload, sorted by name.
func (c *Controller) Nodes(ctx context.Context) ([]api.Node, error) {
	v, err := c.view(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	names := map[string]bool{}
	for n := range v.nodes {
		names[n] = true
	}
	for n := range v.plans {
		names[n] = true
	}
	out := make([]api.Node, 0, len(names))
	for n := range names {
		out = append(out, c.node(v, n, false))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Node describes one node, with the workloads and overrides it last
// reported.
func (c *Controller) Node(ctx context.Context, name string) (api.Node, error) {
	v, err := c.view(ctx, false)
	if err != nil {
		return api.Node{}, fmt.Errorf("get node %s: %w", name, err)
	}
	_, known := v.nodes[name]
	_, planned := v.plans[name]
	if !known && !planned {
		return api.Node{}, api.Errorf(api.ErrNotFound, "node %s not found", name)
	}
	return c.node(v, name, true), nil
}

// Workloads lists every workload with its targets and instances.
func (c *Controller) Workloads(ctx context.Context) ([]api.Workload, error) {
	v, err := c.view(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("list workloads: %w", err)
	}
	out := make([]api.Workload, 0, len(v.workloads))
	for _, w := range v.workloads {
		out = append(out, c.workload(v, w.Value))
	}
	return out, nil
}

// Workload describes one workload.
func (c *Controller) Workload(ctx context.Context, name string) (api.Workload, error) {
	v, err := c.view(ctx, true)
	if err != nil {
		return api.Workload{}, fmt.Errorf("get workload %s: %w", name, err)
	}
	for _, w := range v.workloads {
		if w.Key == name {
			return c.workload(v, w.Value), nil
		}
	}
	return api.Workload{}, api.Errorf(api.ErrNotFound, "workload %s not found", name)
}

func (c *Controller) workload(v *view, w intent.Workload) api.Workload {
	known := make([]planner.Node, 0, len(v.nodes))
	for name, n := range v.nodes {
		known = append(known, planner.Node{Name: name, Labels: n.Labels})
	}
	targets, reason := planner.TargetNodes(w.Manifest, known)
	out := api.Workload{
		Name: w.Manifest.Metadata.Name, Manifest: w.Manifest,
		Targets: len(targets), TargetReason: reason,
		Instances: make([]api.Instance, 0, len(targets)),
	}
	now := c.clock.Now()
	for _, node := range targets {
		st := v.statuses[node]
		s := c.session(node, v.nodes[node], st)
		in := api.Instance{Node: node, NodeState: c.fleet.StateAt(s.LastSeen, now),
			State: StateUnknown, Revision: s.AppliedRevision}
		for _, ws := range st.Workloads {
			if ws.Name == out.Name {
				in.State, in.Reason, in.Restarts = string(ws.State), ws.Reason, ws.Restarts
				break
			}
		}
		out.Instances = append(out.Instances, in)
	}
	return out
}

// nodeLink is what the hub knows of a node's link: whether it knows the
// node at all, and its state and last contact.
func (c *Controller) nodeLink(ctx context.Context, name string) (known bool, state string, lastSeen time.Time, err error) {
	s, inFleet := c.fleet.Get(name)
	rec, err := c.store.Nodes.Get(ctx, name)
	switch {
	case err == nil:
		known = true
		if rec.Value.LastSeen.After(s.LastSeen) {
			s.LastSeen = rec.Value.LastSeen
		}
	case !errors.Is(err, intent.ErrNotFound):
		return false, "", time.Time{}, err
	}
	if !known && !inFleet {
		if _, err := c.store.Plans.Get(ctx, name); err == nil {
			known = true
		} else if !errors.Is(err, intent.ErrNotFound) {
			return false, "", time.Time{}, err
		}
	}
	return known || inFleet, c.fleet.StateAt(s.LastSeen, c.clock.Now()), s.LastSeen, nil
}
