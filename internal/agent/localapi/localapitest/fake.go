// Package localapitest provides a fake localapi.Node that records calls and
// a helper that serves it on a unix socket for the duration of a test.
package localapitest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/manifest"
)

// Node is a fake localapi.Node. It knows the workloads in Statuses plus
// those applied to it, and records every call. Set its fields before
// serving it; read them afterwards through its methods.
type Node struct {
	// Statuses is what Status reports, besides applied workloads.
	Statuses []supervisor.Status
	// EventLog is what Events filters.
	EventLog []store.Event
	// LogFiles maps a workload to its log file; a workload without an entry
	// has no log file yet (LogPath returns a path that does not exist).
	LogFiles map[string]string
	// NodeInfo is what Info returns.
	NodeInfo localapi.NodeInfo
	// Err, when set, is returned by Apply, Delete, Restart and Events.
	Err error
	// Artifacts is where PutArtifact stores; set its Dir to a temp dir.
	Artifacts artifact.Cache

	mu      sync.Mutex
	calls   []string
	applied map[string]manifest.Workload
}

var _ localapi.Node = (*Node)(nil)

// Calls returns the calls made so far, e.g. "Apply(a,b)", "Delete(a)".
func (n *Node) Calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// Applied returns the last workload applied under name.
func (n *Node) Applied(name string) (manifest.Workload, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w, ok := n.applied[name]
	return w, ok
}

func (n *Node) record(format string, args ...any) {
	n.calls = append(n.calls, fmt.Sprintf(format, args...))
}

// Apply records ws and reports each workload created the first time and
// configured afterwards.
func (n *Node) Apply(_ context.Context, ws []manifest.Workload, ch localapi.Change) ([]localapi.ApplyResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Metadata.Name
	}
	n.record("Apply(%s)%s", strings.Join(names, ","), prio(ch))
	if n.Err != nil {
		return nil, n.Err
	}
	if n.applied == nil {
		n.applied = make(map[string]manifest.Workload)
	}
	res := make([]localapi.ApplyResult, len(ws))
	for i, w := range ws {
		action := localapi.ActionCreated
		if n.knows(w.Metadata.Name) {
			action = localapi.ActionConfigured
		}
		n.applied[w.Metadata.Name] = w
		res[i] = localapi.ApplyResult{Name: w.Metadata.Name, Action: action}
	}
	return res, nil
}

// PutArtifact stores into n.Artifacts, verifying the digest.
func (n *Node) PutArtifact(ref string, r io.Reader) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("PutArtifact(%s)", ref)
	_, err := n.Artifacts.Put(r, ref)
	return err
}

// Delete forgets an applied workload.
func (n *Node) Delete(_ context.Context, name string, ch localapi.Change) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("Delete(%s)%s", name, prio(ch))
	if n.Err != nil {
		return n.Err
	}
	if !n.knows(name) {
		return fmt.Errorf("delete %q: %w", name, supervisor.ErrWorkloadNotFound)
	}
	delete(n.applied, name)
	return nil
}

// Set records the variables; it only checks that the workload exists.
func (n *Node) Set(_ context.Context, name string, env map[string]string, unset []string, ch localapi.Change) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	keys := slices.Sorted(maps.Keys(env))
	n.record("Set(%s,%s,-%s)%s", name, strings.Join(keys, ","), strings.Join(unset, ","), prio(ch))
	if !n.knows(name) {
		return fmt.Errorf("set %q: %w", name, supervisor.ErrWorkloadNotFound)
	}
	return nil
}

// prio renders a non-default priority in a recorded call.
func prio(ch localapi.Change) string {
	if ch.Priority == 0 {
		return ""
	}
	return fmt.Sprintf("@%d", ch.Priority)
}

// Restart only checks that the workload exists.
func (n *Node) Restart(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("Restart(%s)", name)
	if n.Err != nil {
		return n.Err
	}
	if !n.knows(name) {
		return fmt.Errorf("restart %q: %w", name, supervisor.ErrWorkloadNotFound)
	}
	return nil
}

// Status reports Statuses and applied workloads (as pending), by name.
func (n *Node) Status() []supervisor.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("Status()")
	var st []supervisor.Status
	st = append(st, n.Statuses...)
	for _, name := range slices.Sorted(maps.Keys(n.applied)) {
		w := n.applied[name]
		st = append(st, supervisor.Status{Name: name, Runtime: string(w.Spec.Runtime), State: supervisor.StatePending})
	}
	sort.SliceStable(st, func(i, j int) bool { return st[i].Name < st[j].Name })
	return st
}

// Events returns the events of EventLog after afterSeq.
func (n *Node) Events(afterSeq uint64) ([]store.Event, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("Events(%d)", afterSeq)
	if n.Err != nil {
		return nil, n.Err
	}
	var evs []store.Event
	for _, e := range n.EventLog {
		if e.Seq > afterSeq {
			evs = append(evs, e)
		}
	}
	return evs, nil
}

// LogPath returns the workload's entry in LogFiles.
func (n *Node) LogPath(name string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("LogPath(%s)", name)
	if !n.knows(name) {
		return "", fmt.Errorf("logs of %q: %w", name, supervisor.ErrWorkloadNotFound)
	}
	if p, ok := n.LogFiles[name]; ok {
		return p, nil
	}
	return filepath.Join("/nonexistent", name+".log"), nil
}

// Info returns NodeInfo.
func (n *Node) Info() localapi.NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("Info()")
	return n.NodeInfo
}

// knows reports whether name is in Statuses, LogFiles or was applied.
// n.mu must be held.
func (n *Node) knows(name string) bool {
	if _, ok := n.applied[name]; ok {
		return true
	}
	if _, ok := n.LogFiles[name]; ok {
		return true
	}
	return slices.ContainsFunc(n.Statuses, func(s supervisor.Status) bool { return s.Name == name })
}
