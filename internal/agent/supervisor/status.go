package supervisor

import (
	"slices"
	"sort"

	"atoll.dev/atoll/internal/wire"
)

// State is where a workload is in its lifecycle (see doc.go).
type State = wire.State

// The workload states.
const (
	StatePending  = wire.StatePending
	StateStarting = wire.StateStarting
	StateRunning  = wire.StateRunning
	StateBackoff  = wire.StateBackoff
	StateStopped  = wire.StateStopped
	StateFailed   = wire.StateFailed
	StateBlocked  = wire.StateBlocked
)

// Status is one workload as the supervisor sees it; it is the wire's
// WorkloadStatus, so the local API, the hub and the CLI share one shape.
type Status = wire.WorkloadStatus

// publish snapshots every workload's status for Status.
func (s *Supervisor) publish() {
	out := make([]Status, 0, len(s.ws))
	for _, w := range s.ws {
		st := Status{Name: w.name, Runtime: string(w.spec.Runtime), Restarts: w.restarts,
			Priority: w.spec.Priority, Health: w.health}
		switch {
		case w.inst != nil && w.inst.recovering:
			st.State, st.Reason = StateStarting, "adopting the instance a previous agent started"
		case w.inst != nil && !w.inst.started:
			st.State = StateStarting
		case w.inst != nil:
			st.State, st.PID, st.Limits, st.StartedAt = StateRunning, w.inst.pid, w.inst.limits, w.inst.startedAt
			if w.inst.stopping != "" {
				st.Reason = "stopping: " + w.inst.stopping
			}
		case w.timer != nil:
			st.State, st.Reason = StateBackoff, w.reason
		case w.finished != "":
			st.State, st.Reason = w.finished, w.reason
		case w.waiting != "":
			st.State, st.Reason = StatePending, w.waiting
		case w.evicted != "":
			st.State, st.Reason = StateBlocked, w.evicted
		case w.blockedBy != "":
			st.State, st.Reason = StateBlocked, w.blockedBy
		default:
			st.State = StatePending
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	s.mu.Lock()
	same := slices.Equal(s.statuses, out)
	s.statuses = out
	s.mu.Unlock()
	if !same {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}
