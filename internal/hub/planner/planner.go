// Package planner decides which workloads target which nodes and turns
// that into per-node plans whose revision grows by one exactly when their
// content changes. It is pure: no I/O, no clock.
//
// A workload targets a node when the node is named in spec.placement.nodes,
// or when the node's labels contain every key=value of
// spec.placement.nodeSelector (the two are a union, like "by name or by
// selector"). A named node need not be known yet: its plan is made anyway
// and waits for it. A workload with neither targets no node, and says so.
package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// Node is what placement looks at: a node's name and labels. A node that
// was never seen (only named by a workload) has no labels.
type Node struct {
	Name   string
	Labels map[string]string
}

// Workload is a stored workload: its normalized manifest and the hub's
// clock when its spec last changed.
type Workload struct {
	Spec        manifest.Workload
	Stamp       hlc.Timestamp
	FieldStamps map[string]hlc.Timestamp
}

// Reasons for a workload that targets no node.
const (
	ReasonNoPlacement = "no spec.placement: targets no node"
)

// Matches reports whether labels contain every key=value of selector. An
// empty selector matches nothing: it is "no selector", not "every node".
func Matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Targets reports whether w targets n.
func Targets(w manifest.Workload, n Node) bool {
	return Placed(w.Spec.Placement, n)
}

// Placed reports whether p selects n (a workload's or a secret's
// placement).
func Placed(p manifest.Placement, n Node) bool {
	return slices.Contains(p.Nodes, n.Name) || Matches(p.NodeSelector, n.Labels)
}

// TargetNodes lists, sorted, the nodes w targets among nodes plus the
// nodes it names that are not in nodes. When the list is empty, reason
// says why.
func TargetNodes(w manifest.Workload, nodes []Node) (names []string, reason string) {
	names = PlacedNodes(w.Spec.Placement, nodes)
	if len(names) > 0 {
		return names, ""
	}
	sel := w.Spec.Placement.NodeSelector
	if len(sel) == 0 {
		return nil, ReasonNoPlacement
	}
	return nil, fmt.Sprintf("spec.placement.nodeSelector %s matches no known node", formatSelector(sel))
}

// PlacedNodes lists, sorted, the nodes p selects among nodes plus the
// nodes it names that are not in nodes.
func PlacedNodes(p manifest.Placement, nodes []Node) []string {
	set := map[string]bool{}
	for _, n := range p.Nodes {
		set[n] = true
	}
	for _, n := range nodes {
		if Placed(p, n) {
			set[n.Name] = true
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func formatSelector(sel map[string]string) string {
	pairs := make([]string, 0, len(sel))
	for k, v := range sel {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// Universe is every node that needs a plan: the known nodes, the nodes a
// workload names, and the nodes that already have a plan (whose content may
// have to shrink to nothing). Known nodes keep their labels; the others
// have none. The result is sorted by name.
func Universe(known []Node, ws []Workload, planned []string) []Node {
	byName := make(map[string]Node, len(known))
	for _, n := range known {
		byName[n.Name] = n
	}
	add := func(name string) {
		if _, ok := byName[name]; !ok {
			byName[name] = Node{Name: name}
		}
	}
	for _, w := range ws {
		for _, n := range w.Spec.Spec.Placement.Nodes {
			add(n)
		}
	}
	for _, n := range planned {
		add(n)
	}
	out := make([]Node, 0, len(byName))
	for _, n := range byName {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Content is n's plan content: every workload that targets n, sorted by
// name, with the hub's priority left at its default, and a container
// workload whose image is in images (by name) carrying its archive. It is
// never nil.
func Content(n Node, ws []Workload, images map[string]wire.ImageArtifact) []wire.PlanWorkload {
	out := []wire.PlanWorkload{}
	for _, w := range ws {
		if !Targets(w.Spec, n) {
			continue
		}
		pw := wire.PlanWorkload{Workload: w.Spec, Stamp: w.Stamp, FieldStamps: w.FieldStamps}
		if c := w.Spec.Spec.Container; c != nil {
			if im, ok := images[c.Image]; ok {
				pw.ImageArtifact = &im
			}
		}
		out = append(out, pw)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Workload.Metadata.Name < out[j].Workload.Metadata.Name
	})
	return out
}

// Next returns the plan that follows prev (nil when the node has none) for
// content, and whether it changed. An unchanged plan is prev itself; a
// changed one has the next revision and stamp. A node without a plan whose
// content is empty needs none (its revision stays 0).
func Next(prev *wire.Plan, node string, content []wire.PlanWorkload, stamp hlc.Timestamp) (wire.Plan, bool) {
	if prev == nil {
		if len(content) == 0 {
			return wire.Plan{Node: node, Workloads: []wire.PlanWorkload{}}, false
		}
		return wire.Plan{Node: node, Revision: 1, Stamp: stamp, Workloads: content}, true
	}
	if SameContent(prev.Workloads, content) {
		return *prev, false
	}
	return wire.Plan{Node: node, Revision: prev.Revision + 1, Stamp: stamp, Workloads: content}, true
}

// SameContent reports whether two plan contents are equal, field for
// field (through their JSON form, which is what the agent receives).
func SameContent(a, b []wire.PlanWorkload) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
