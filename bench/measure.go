package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/manifest"
)

// Poll intervals. Process appearance is watched in /proc at procPoll, so
// that the restart figure is the agent's and not the poller's; the API is
// polled at apiPoll for the start-up figures, as a client would.
const (
	procPoll    = time.Millisecond
	apiPoll     = 5 * time.Millisecond
	settleIdle  = 3 * time.Second  // agent with no workloads, before measuring memory
	settleBusy  = 3 * time.Second  // agent with 10 running workloads, before measuring memory
	cpuWindow   = 10 * time.Second // idle CPU window
	killSpacing = 10 * time.Millisecond
	startCount  = 50 // workloads of the start-up figures
	memCount    = 10 // workloads of the memory and CPU figures
)

// restartResult is figure 1.
type restartResult struct {
	proc, api []time.Duration // kill → new process exists; kill → API shows it running
	restarts  int             // the agent's restart count at the end
	// events written per restart, by type, and all together
	eventTypes     map[string]float64
	eventsPerCrash float64
	scanMean       time.Duration // mean duration of one /proc scan
}

// measureRestart SIGKILLs the process of a `sleep` workload runs times and
// times how soon a new process for it exists and how soon the API reports
// it running.
func (h *harness) measureRestart(ctx context.Context, runs int) (restartResult, error) {
	var r restartResult
	a, err := h.startAgent(h.dataDir("restart"))
	if err != nil {
		return r, err
	}
	if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "agent API", anyStatus); err != nil {
		return r, err
	}
	name := h.name("restart")
	ws, err := h.execWorkloads([]string{name}, true)
	if err != nil {
		return r, err
	}
	if err := a.apply(ctx, ws); err != nil {
		return r, err
	}
	st, err := a.waitStatus(ctx, apiPoll, startTimeout, "restart workload running", func(st []supervisor.Status) bool {
		_, ok := running(st, []string{name}, nil)
		return ok
	})
	if err != nil {
		return r, err
	}
	pid := st[0].PID
	firstSeq, err := lastEventSeq(ctx, a)
	if err != nil {
		return r, err
	}

	kv := "ATOLL_WORKLOAD=" + name
	w := &procWatch{parent: a.pid()}
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if !hasEnv(pid, kv) {
			return r, fmt.Errorf("crash %d: pid %d does not carry %s; not killing it", i+1, pid, kv)
		}
		if err := w.prime(); err != nil {
			return r, err
		}
		t0 := time.Now()
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			return r, fmt.Errorf("crash %d: kill %d: %w", i+1, pid, err)
		}
		var next int
		for polls := 1; next == 0; polls++ {
			time.Sleep(procPoll)
			if next, err = w.find(kv, pid, polls%50 == 0); err != nil {
				return r, err
			}
			if next == 0 && time.Since(t0) > startTimeout {
				return r, fmt.Errorf("crash %d: no new process for %s within %v%s", i+1, name, startTimeout, a.logTail())
			}
		}
		r.proc = append(r.proc, time.Since(t0))
		for {
			st, err := a.status(ctx)
			if err != nil {
				return r, fmt.Errorf("crash %d: %w", i+1, err)
			}
			if len(st) == 1 && st[0].State == supervisor.StateRunning && st[0].PID == next {
				break
			}
			if len(st) == 1 && st[0].State == supervisor.StateRunning && st[0].PID != pid {
				return r, fmt.Errorf("crash %d: API shows pid %d running, /proc found %d", i+1, st[0].PID, next)
			}
			if time.Since(t0) > startTimeout {
				return r, fmt.Errorf("crash %d: API did not show pid %d running within %v: %s", i+1, next, startTimeout, summarize(st))
			}
			time.Sleep(procPoll)
		}
		r.api = append(r.api, time.Since(t0))
		pid = next
		time.Sleep(killSpacing)
	}
	r.scanMean = w.scanTime / time.Duration(max(w.scans, 1))

	st, err = a.status(ctx)
	if err != nil {
		return r, err
	}
	r.restarts = st[0].Restarts
	evs, err := a.client.Events(ctx, firstSeq)
	if err != nil {
		return r, fmt.Errorf("events: %w", err)
	}
	counts := map[string]int{}
	for _, e := range evs {
		if e.Workload == name {
			counts[e.Type]++
		}
	}
	// Old events may have been dropped by the store's retention; count per
	// "exited" event seen rather than per crash.
	if crashes := counts["exited"]; crashes > 0 {
		r.eventTypes = map[string]float64{}
		total := 0
		for t, n := range counts {
			r.eventTypes[t] = float64(n) / float64(crashes)
			total += n
		}
		r.eventsPerCrash = float64(total) / float64(crashes)
	}
	return r, h.teardown()
}

func anyStatus([]supervisor.Status) bool { return true }

// lastEventSeq returns the sequence number of the newest event.
func lastEventSeq(ctx context.Context, a *agent) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	evs, err := a.client.Events(cctx, 0)
	if err != nil {
		return 0, fmt.Errorf("events: %w", err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	return evs[len(evs)-1].Seq, nil
}

// startResult is figure 2, one value per repetition.
type startResult struct {
	apiUp     []time.Duration // agent process start → API answers (no workloads)
	applyCall []time.Duration // apply call start → apply call returned
	apply     []time.Duration // apply call start → all running in status
	coldAPI   []time.Duration // new agent process start → API answers (50 stored)
	cold      []time.Duration // new agent process start → all running again
}

// measureStart applies startCount workloads to a fresh agent and times them
// to running; then it kills the agent and every workload's process group, as
// a power cut would, and times a new agent from process start to all
// running again.
func (h *harness) measureStart(ctx context.Context, reps int) (startResult, error) {
	var r startResult
	names := h.names("start", startCount)
	ws, err := h.execWorkloads(names, false)
	if err != nil {
		return r, err
	}
	allRunning := func(exclude map[int]bool) func([]supervisor.Status) bool {
		return func(st []supervisor.Status) bool {
			_, ok := running(st, names, exclude)
			return ok
		}
	}
	for rep := range reps {
		data := h.dataDir(fmt.Sprintf("start-%d", rep+1))
		t0 := time.Now()
		a, err := h.startAgent(data)
		if err != nil {
			return r, err
		}
		if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "agent API", anyStatus); err != nil {
			return r, err
		}
		r.apiUp = append(r.apiUp, time.Since(t0))

		t0 = time.Now()
		if err := a.apply(ctx, ws); err != nil {
			return r, err
		}
		r.applyCall = append(r.applyCall, time.Since(t0))
		st, err := a.waitStatus(ctx, apiPoll, startTimeout, "50 workloads running", allRunning(nil))
		if err != nil {
			return r, err
		}
		r.apply = append(r.apply, time.Since(t0))

		// Power cut: the agent and all its workloads die at once.
		old := map[int]bool{}
		for _, s := range st {
			old[s.PID] = true
		}
		a.kill()
		if err := h.killGroups(old); err != nil {
			return r, err
		}

		t0 = time.Now()
		b, err := h.startAgent(data)
		if err != nil {
			return r, err
		}
		if _, err := b.waitStatus(ctx, apiPoll, startTimeout, "agent API after restart", anyStatus); err != nil {
			return r, err
		}
		r.coldAPI = append(r.coldAPI, time.Since(t0))
		if _, err := b.waitStatus(ctx, apiPoll, startTimeout, "50 workloads running after agent restart", allRunning(old)); err != nil {
			return r, err
		}
		r.cold = append(r.cold, time.Since(t0))
		if err := h.teardown(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// killGroups SIGKILLs the process group of each pid that carries this run's
// marker, and waits until each is gone, reaping those re-parented to us.
func (h *harness) killGroups(pidSet map[int]bool) error {
	for p := range pidSet {
		if !hasEnv(p, h.marker()) {
			return fmt.Errorf("pid %d does not carry %s; not killing it", p, h.marker())
		}
		if err := unix.Kill(-p, unix.SIGKILL); err != nil {
			return fmt.Errorf("kill process group %d: %w", p, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for p := range pidSet {
		_, err := unix.Wait4(p, nil, 0, nil)
		if err == nil {
			continue
		}
		// Not our child (no subreaper): wait for whoever reaps it.
		for !gone(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d survived SIGKILL", p)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// memResult is figures 3 and 4.
type memResult struct {
	idle        mem // agent, no workloads
	busy        mem // agent, memCount workloads running
	all         mem // agent and every descendant, memCount workloads running
	procs       int // processes in all
	helpers     int // descendants that are not workloads
	cpuPercent  float64
	cpuTicks    uint64
	cpuExact    time.Duration // on-CPU time of the agent's threads (schedstat) in the window
	cpuWindow   time.Duration
	workloadCPU uint64 // ticks used by the workloads in the same window
}

// measureMemory measures the agent's memory idle and with memCount
// workloads, then its CPU use over cpuWindow with them running.
func (h *harness) measureMemory(ctx context.Context) (memResult, error) {
	var r memResult
	a, err := h.startAgent(h.dataDir("memory"))
	if err != nil {
		return r, err
	}
	if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "agent API", anyStatus); err != nil {
		return r, err
	}
	if err := sleep(ctx, settleIdle); err != nil {
		return r, err
	}
	if r.idle, err = readMem(a.pid()); err != nil {
		return r, err
	}

	names := h.names("mem", memCount)
	ws, err := h.execWorkloads(names, false)
	if err != nil {
		return r, err
	}
	if err := a.apply(ctx, ws); err != nil {
		return r, err
	}
	st, err := a.waitStatus(ctx, apiPoll, startTimeout, "10 workloads running", func(st []supervisor.Status) bool {
		_, ok := running(st, names, nil)
		return ok
	})
	if err != nil {
		return r, err
	}
	workloads := map[int]bool{}
	for _, s := range st {
		workloads[s.PID] = true
	}
	if err := sleep(ctx, settleBusy); err != nil {
		return r, err
	}
	if r.busy, err = readMem(a.pid()); err != nil {
		return r, err
	}
	kids, err := descendants(a.pid())
	if err != nil {
		return r, err
	}
	r.all, r.procs = r.busy, 1
	for _, p := range kids {
		m, err := readMem(p)
		if err != nil {
			return r, fmt.Errorf("memory of agent descendant %d: %w", p, err)
		}
		r.all = r.all.add(m)
		r.procs++
		if !workloads[p] {
			r.helpers++
		}
	}

	before, err := readStat(a.pid())
	if err != nil {
		return r, err
	}
	threadsBefore, err := threadCPU(a.pid())
	if err != nil {
		return r, err
	}
	kidsBefore, err := ticks(kids)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := sleep(ctx, cpuWindow); err != nil {
		return r, err
	}
	after, err := readStat(a.pid())
	if err != nil {
		return r, err
	}
	threadsAfter, err := threadCPU(a.pid())
	if err != nil {
		return r, err
	}
	r.cpuWindow = time.Since(t0)
	r.cpuExact = cpuSince(threadsBefore, threadsAfter)
	kidsAfter, err := ticks(kids)
	if err != nil {
		return r, err
	}
	r.cpuTicks = after.utime + after.stime - before.utime - before.stime
	r.cpuPercent = float64(r.cpuTicks) / clockTicks / r.cpuWindow.Seconds() * 100
	r.workloadCPU = kidsAfter - kidsBefore
	return r, h.teardown()
}

// ticks sums utime+stime of ps.
func ticks(ps []int) (uint64, error) {
	var n uint64
	for _, p := range ps {
		st, err := readStat(p)
		if err != nil {
			return 0, err
		}
		n += st.utime + st.stime
	}
	return n, nil
}

// wasmResult is figure 6, one value per repetition.
type wasmResult struct {
	cold, warm []time.Duration
	module     int64 // module size in bytes
}

// measureWASM times agent process start → the example sensor module
// running, first with the agent's on-disk compilation cache emptied (as on
// the first start ever), then with it warm (any later start).
func (h *harness) measureWASM(ctx context.Context, reps int) (wasmResult, error) {
	var r wasmResult
	module := filepath.Join(h.root, "examples", "wasm", "sensor.wasm")
	fi, err := os.Stat(module)
	if err != nil {
		return r, err
	}
	r.module = fi.Size()
	name := h.name("sensor")
	doc := fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: wasm
  wasm:
    module: %s
    env: {SENSOR: temp0, INTERVAL: 1s}
  resources:
    memory: 32Mi
`, name, module)
	ws, err := manifest.Decode("sensor.yaml", []byte(doc))
	if err != nil {
		return r, err
	}
	sensorRunning := func(st []supervisor.Status) bool {
		_, ok := running(st, []string{name}, nil)
		return ok
	}
	for rep := range reps {
		data := h.dataDir(fmt.Sprintf("wasm-%d", rep+1))
		a, err := h.startAgent(data)
		if err != nil {
			return r, err
		}
		if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "agent API", anyStatus); err != nil {
			return r, err
		}
		if err := a.apply(ctx, ws); err != nil {
			return r, err
		}
		if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "sensor running", sensorRunning); err != nil {
			return r, err
		}
		if err := a.stop(); err != nil {
			return r, err
		}
		// The compilation cache lives in DATA/cache/wasm (internal/agent).
		cache := filepath.Join(data, "cache", "wasm")
		if _, err := os.Stat(cache); err != nil {
			return r, fmt.Errorf("wasm compilation cache: %w (has the agent's data layout changed?)", err)
		}
		if err := os.RemoveAll(cache); err != nil {
			return r, err
		}
		for _, warm := range []bool{false, true} {
			t0 := time.Now()
			b, err := h.startAgent(data)
			if err != nil {
				return r, err
			}
			what := map[bool]string{false: "sensor running, cold cache", true: "sensor running, warm cache"}[warm]
			if _, err := b.waitStatus(ctx, apiPoll, startTimeout, what, sensorRunning); err != nil {
				return r, err
			}
			d := time.Since(t0)
			if warm {
				r.warm = append(r.warm, d)
			} else {
				r.cold = append(r.cold, d)
			}
			if err := b.stop(); err != nil {
				return r, err
			}
		}
		if err := h.teardown(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// quantile returns the q-quantile of ds by the nearest-rank method.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(float64(len(s))*q)) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func minMax(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	return slices.Min(ds), slices.Max(ds)
}
