package supervisor

import (
	"fmt"
)

// watchPressure samples MemAvailable every PressureInterval and lets the
// loop evict or restore one workload per sample.
func (s *Supervisor) watchPressure() {
	defer s.wg.Done()
	for {
		t := s.cfg.Clock.NewTimer(s.cfg.PressureInterval)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		avail, err := s.cfg.MemAvailable()
		if err != nil {
			s.cfg.Logger.Error("read available memory", "err", err)
			continue
		}
		s.post(func() { s.pressure(avail) })
	}
}

// pressure reacts to one MemAvailable sample. Below the threshold it stops
// the least important running workload, never one of the most important
// priority present on the node: the safety monitor keeps running, the data
// uploader waits. Once MemAvailable is back above the threshold with room
// for its declared memory (or a quarter of the threshold when it declares
// none), the most important evicted workload is started again.
func (s *Supervisor) pressure(avail int64) {
	threshold := s.cfg.PressureThreshold
	if avail < threshold {
		top := s.topPriority()
		var victim *workload
		for _, w := range s.ws {
			if w.inst == nil || !w.inst.started || w.inst.stopping != "" || w.spec.Priority >= top {
				continue
			}
			if victim == nil || lessImportant(w, victim) {
				victim = w
			}
		}
		if victim == nil {
			return
		}
		victim.evicted = fmt.Sprintf("memory pressure: MemAvailable %s below %s; lower priorities stop first",
			formatBytes(avail), formatBytes(threshold))
		s.event(victim.name, "evicted", victim.evicted)
		s.stop(victim, "memory pressure")
		return
	}
	var back *workload
	for _, w := range s.ws {
		if w.evicted != "" && (back == nil || lessImportant(back, w)) {
			back = w
		}
	}
	if back == nil {
		return
	}
	need := back.spec.Resources.MemoryBytes()
	if need == 0 {
		need = threshold / 4
	}
	if avail-need < threshold {
		return
	}
	back.evicted = ""
	s.event(back.name, "readmitted", fmt.Sprintf("memory pressure over: MemAvailable %s", formatBytes(avail)))
	s.reconcile()
}

func (s *Supervisor) topPriority() int {
	top, any := 0, false
	for _, w := range s.ws {
		if w.removing == nil && (!any || w.spec.Priority > top) {
			top, any = w.spec.Priority, true
		}
	}
	return top
}

// lessImportant orders workloads for eviction: lower priority first, then
// the reverse of the name order admission uses.
func lessImportant(a, b *workload) bool {
	if a.spec.Priority != b.spec.Priority {
		return a.spec.Priority < b.spec.Priority
	}
	return a.name > b.name
}
