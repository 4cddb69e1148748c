package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/testtask"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/driver/exec"
	"atoll.dev/atoll/internal/manifest"
)

func TestMain(m *testing.M) {
	testtask.Run()
	os.Exit(m.Run())
}

const wait = 15 * time.Second

// harness is a supervisor over a real store and the real exec driver.
type harness struct {
	t     *testing.T
	dir   string
	store *store.Store
	sup   *supervisor.Supervisor
	exec  *exec.Driver
}

func newHarness(t *testing.T, mod func(*supervisor.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	st, _, err := store.Open(h.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.store = st
	h.start(mod)
	t.Cleanup(func() {
		// Stop every workload so no process outlives the test.
		_ = h.sup.Sync(context.Background(), nil)
		h.sup.Close()
		st.Close()
		_ = h.exec.RemoveCgroupParent()
	})
	return h
}

func (h *harness) start(mod func(*supervisor.Config)) {
	h.exec = exec.New(exec.Config{CgroupParent: "atoll-test-" + filepath.Base(h.dir)})
	cfg := supervisor.Config{
		Drivers:          map[manifest.Runtime]driver.Driver{manifest.RuntimeExec: h.exec},
		Store:            h.store,
		LogDir:           filepath.Join(h.dir, "logs"),
		CapacityMemory:   1 << 40,
		CapacityMilliCPU: 64000,
		StopGrace:        2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	h.sup = supervisor.New(cfg)
	h.sup.Start()
}

func (h *harness) sync(ws ...supervisor.Workload) {
	h.t.Helper()
	if err := h.sup.Sync(context.Background(), ws); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) status(name string) supervisor.Status {
	for _, s := range h.sup.Status() {
		if s.Name == name {
			return s
		}
	}
	return supervisor.Status{}
}

// waitState waits until name is in state and cond (if any) holds.
func (h *harness) waitState(name string, state supervisor.State, cond func(supervisor.Status) error) supervisor.Status {
	h.t.Helper()
	var st supervisor.Status
	atolltest.WaitFor(h.t, wait, func() error {
		st = h.status(name)
		if st.State != state {
			return fmt.Errorf("%s is %s (%s), want %s", name, st.State, st.Reason, state)
		}
		if cond != nil {
			return cond(st)
		}
		return nil
	})
	return st
}

func (h *harness) events(name, typ string) []store.Event {
	h.t.Helper()
	all, err := h.store.Events(0, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.Event
	for _, e := range all {
		if e.Workload == name && (typ == "" || e.Type == typ) {
			out = append(out, e)
		}
	}
	return out
}

func dur(d time.Duration) *manifest.Duration { return &manifest.Duration{Duration: d} }

func execW(name string, prio int, argv ...string) supervisor.Workload {
	return supervisor.Workload{Name: name, Spec: manifest.WorkloadSpec{
		Runtime:  manifest.RuntimeExec,
		Exec:     &manifest.ExecSpec{Command: argv},
		Priority: prio,
		Restart:  manifest.Restart{Policy: manifest.RestartAlways},
	}}
}

func self(task string) supervisor.Workload {
	w := execW("task", 0, os.Args[0])
	w.Spec.Exec.Env = map[string]string{testtask.Env: task}
	return w
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestSupervisor_CrashRestartsWithGrowingBackoff(t *testing.T) {
	h := newHarness(t, nil)
	w := execW("crasher", 0, "sh", "-c", "echo config missing; exit 3")
	w.Spec.Restart.Backoff = manifest.Backoff{Initial: dur(20 * time.Millisecond), Max: dur(160 * time.Millisecond), ResetAfter: dur(time.Minute)}
	h.sync(w)
	atolltest.WaitFor(t, wait, func() error {
		if n := len(h.events("crasher", "started")); n < 6 {
			return fmt.Errorf("%d starts", n)
		}
		return nil
	})
	backoffs := h.events("crasher", "backoff")
	want := []string{"restart 1 in 20ms", "restart 2 in 40ms", "restart 3 in 80ms", "restart 4 in 160ms", "restart 5 in 160ms"}
	for i, sfx := range want {
		if !strings.Contains(backoffs[i].Message, "exited with code 3") || !strings.HasSuffix(backoffs[i].Message, sfx) {
			t.Errorf("backoff %d: %q, want exit code 3 and %q", i, backoffs[i].Message, sfx)
		}
	}
	// Each start waits at least its delay after the exit before it: the
	// delays are lower bounds a busy machine cannot undercut.
	starts := h.events("crasher", "started")
	delays := []time.Duration{20, 40, 80, 160, 160}
	for i, d := range delays {
		if gap := starts[i+1].Time.Sub(backoffs[i].Time); gap < d*time.Millisecond {
			t.Errorf("start %d came %v after its exit, before the %vms backoff", i+2, gap, d)
		}
	}
	if st := h.status("crasher"); st.Restarts < 5 {
		t.Errorf("restarts = %d, want >= 5", st.Restarts)
	}
	// The third failure in a row is a crash loop: one alert, at once,
	// with the log's last lines.
	loops := h.events("crasher", "crash-loop")
	if len(loops) != 1 {
		t.Fatalf("%d crash-loop events after 6 quick failures, want 1: %+v", len(loops), loops)
	}
	if !strings.HasPrefix(loops[0].Message, "crash loop: 3 failures in a row, none running 1m0s; last: exited with code 3") ||
		loops[0].Log != strings.Repeat("config missing\n", 3) {
		t.Errorf("crash-loop event: %q, log %q; want 3 failures and 3 log lines", loops[0].Message, loops[0].Log)
	}
	if loops[0].Time.Before(backoffs[2].Time) || loops[0].Time.After(starts[3].Time) {
		t.Errorf("crash-loop at %v, want between the third backoff (%v) and the fourth start (%v)",
			loops[0].Time, backoffs[2].Time, starts[3].Time)
	}
}

func TestSupervisor_BackoffResetsAfterHealthyRun(t *testing.T) {
	h := newHarness(t, nil)
	// Each run outlives resetAfter, so every restart uses the initial delay.
	w := execW("flaky", 0, "sh", "-c", "sleep 0.3; exit 1")
	w.Spec.Restart.Backoff = manifest.Backoff{Initial: dur(30 * time.Millisecond), Max: dur(10 * time.Second), ResetAfter: dur(200 * time.Millisecond)}
	h.sync(w)
	atolltest.WaitFor(t, wait, func() error {
		if n := len(h.events("flaky", "backoff")); n < 3 {
			return fmt.Errorf("%d backoffs", n)
		}
		return nil
	})
	for _, e := range h.events("flaky", "backoff")[:3] {
		if !strings.HasSuffix(e.Message, "in 30ms") {
			t.Errorf("backoff %q did not reset to 30ms", e.Message)
		}
	}
	if loops := h.events("flaky", "crash-loop"); len(loops) != 0 {
		t.Errorf("crash-loop events for a workload that runs past resetAfter each time: %+v", loops)
	}
}

func TestSupervisor_Policies(t *testing.T) {
	h := newHarness(t, nil)
	never := execW("never", 0, "sh", "-c", "exit 4")
	never.Spec.Restart.Policy = manifest.RestartNever
	done := execW("done", 0, "true")
	done.Spec.Restart.Policy = manifest.RestartOnFailure
	h.sync(never, done)
	st := h.waitState("never", supervisor.StateFailed, nil)
	if st.Reason != "exited with code 4; restart policy never" || st.Restarts != 0 {
		t.Errorf("never: %+v", st)
	}
	st = h.waitState("done", supervisor.StateStopped, nil)
	if st.Reason != "exited with code 0" {
		t.Errorf("on-failure after success: %+v", st)
	}
}

func TestSupervisor_FinishedStaysFinishedAcrossAgentRestart(t *testing.T) {
	h := newHarness(t, nil)
	never := execW("once", 0, "sh", "-c", "exit 4")
	never.Spec.Restart.Policy = manifest.RestartNever
	h.sync(never)
	h.waitState("once", supervisor.StateFailed, nil)
	h.sup.Close()
	h.start(nil)
	h.sync(never)
	st := h.waitState("once", supervisor.StateFailed, nil)
	if st.Reason != "exited with code 4; restart policy never" {
		t.Errorf("reason after restart: %q", st.Reason)
	}
	if n := len(h.events("once", "started")); n != 1 {
		t.Fatalf("%d starts, want 1: a finished workload ran again after an agent restart", n)
	}
	// An explicit restart runs it again.
	if err := h.sup.Restart(context.Background(), "once"); err != nil {
		t.Fatal(err)
	}
	atolltest.WaitFor(t, wait, func() error {
		if n := len(h.events("once", "started")); n != 2 {
			return fmt.Errorf("%d starts", n)
		}
		return nil
	})
}

func TestSupervisor_FailingHealthCheckRestarts(t *testing.T) {
	h := newHarness(t, nil)
	w := execW("sick", 0, "sh", "-c", "echo listening on :8080; exec sleep 1000")
	w.Spec.Health = &manifest.Health{
		Exec: &manifest.ExecCheck{Command: []string{"false"}}, Interval: dur(30 * time.Millisecond),
		Timeout: dur(time.Second), FailureThreshold: 2,
	}
	w.Spec.Restart.Backoff = manifest.Backoff{Initial: dur(10 * time.Millisecond), Max: dur(10 * time.Millisecond)}
	h.sync(w)
	first := h.waitState("sick", supervisor.StateRunning, nil)
	st := h.waitState("sick", supervisor.StateRunning, func(s supervisor.Status) error {
		if s.Restarts < 1 || s.PID == first.PID {
			return fmt.Errorf("restarts %d pid %d", s.Restarts, s.PID)
		}
		return nil
	})
	if st.Health == "healthy" {
		t.Errorf("health %q for a check that always fails", st.Health)
	}
	ev := h.events("sick", "unhealthy")
	if len(ev) == 0 || !strings.Contains(ev[0].Message, "health check failed 2 times") {
		t.Fatalf("unhealthy events: %+v", ev)
	}
	if !strings.HasPrefix(ev[0].Log, "listening on :8080\n") {
		t.Errorf("unhealthy event carries log %q, want the workload's output", ev[0].Log)
	}
	atolltest.WaitFor(t, wait, func() error {
		if alive(first.PID) {
			return fmt.Errorf("unhealthy instance %d still running", first.PID)
		}
		return nil
	})
}

func TestSupervisor_HTTPHealthCheckPasses(t *testing.T) {
	h := newHarness(t, nil)
	port := atolltest.FreePort(t)
	w := self(fmt.Sprintf("http:%d", port))
	w.Spec.Health = &manifest.Health{HTTP: &manifest.HTTPCheck{Port: port, Path: "/"}, Interval: dur(30 * time.Millisecond), Timeout: dur(time.Second), FailureThreshold: 3}
	h.sync(w)
	h.waitState("task", supervisor.StateRunning, func(s supervisor.Status) error {
		if s.Health != "healthy" {
			return fmt.Errorf("health %q", s.Health)
		}
		return nil
	})
}

func TestSupervisor_PriorityAdmission(t *testing.T) {
	h := newHarness(t, func(c *supervisor.Config) { c.CapacityMemory = 100 << 20 })
	safety := execW("safety-monitor", 100, "sleep", "1000")
	safety.Spec.Resources.Memory = "60Mi"
	uploader := execW("data-uploader", 1, "sleep", "1000")
	uploader.Spec.Resources.Memory = "60Mi"
	h.sync(uploader, safety)
	h.waitState("safety-monitor", supervisor.StateRunning, nil)
	st := h.waitState("data-uploader", supervisor.StateBlocked, nil)
	if !strings.Contains(st.Reason, "insufficient memory: needs 60Mi, 40Mi of 100Mi left") {
		t.Errorf("reason %q", st.Reason)
	}
	// Removing the safety monitor frees its reservation; the uploader runs.
	h.sync(uploader)
	h.waitState("data-uploader", supervisor.StateRunning, nil)
}

func TestSupervisor_PressureEvictsLowestPriorityFirst(t *testing.T) {
	var avail, samples atomic.Int64
	avail.Store(1 << 30)
	h := newHarness(t, func(c *supervisor.Config) {
		c.PressureThreshold = 100 << 20
		c.PressureInterval = 20 * time.Millisecond
		c.MemAvailable = func() (int64, error) { samples.Add(1); return avail.Load(), nil }
	})
	h.sync(execW("safety", 100, "sleep", "1000"), execW("camera", 50, "sleep", "1000"), execW("uploader", 1, "sleep", "1000"))
	for _, n := range []string{"safety", "camera", "uploader"} {
		h.waitState(n, supervisor.StateRunning, nil)
	}
	avail.Store(10 << 20)
	h.waitState("uploader", supervisor.StateBlocked, nil)
	h.waitState("camera", supervisor.StateBlocked, func(s supervisor.Status) error {
		if !strings.Contains(s.Reason, "memory pressure: MemAvailable 10Mi below 100Mi") {
			return fmt.Errorf("reason %q", s.Reason)
		}
		return nil
	})
	uploaderOut, cameraOut := h.events("uploader", "evicted"), h.events("camera", "evicted")
	if len(uploaderOut) == 0 || len(cameraOut) == 0 || uploaderOut[0].Seq > cameraOut[0].Seq {
		t.Fatalf("eviction order: uploader %v camera %v", uploaderOut, cameraOut)
	}
	// The most important workload is never evicted, however long the
	// pressure lasts: watch five more samples.
	seen := samples.Load()
	atolltest.WaitFor(t, wait, func() error {
		if st := h.status("safety"); st.State != supervisor.StateRunning {
			t.Fatalf("safety evicted: %+v", st)
		}
		if samples.Load() < seen+5 {
			return errors.New("waiting for more pressure samples")
		}
		return nil
	})
	avail.Store(1 << 30)
	h.waitState("uploader", supervisor.StateRunning, nil)
	h.waitState("camera", supervisor.StateRunning, nil)
	cameraBack, uploaderBack := h.events("camera", "readmitted"), h.events("uploader", "readmitted")
	if cameraBack[0].Seq > uploaderBack[0].Seq {
		t.Errorf("camera should come back before uploader")
	}
}

func TestSupervisor_AdoptsAfterAgentRestart(t *testing.T) {
	h := newHarness(t, nil)
	h.sync(execW("svc", 0, "sleep", "1000"))
	before := h.waitState("svc", supervisor.StateRunning, nil)
	h.sup.Close() // the agent goes away; the workload must not
	if !alive(before.PID) {
		t.Fatal("closing the supervisor stopped the workload")
	}
	h.start(nil)
	h.sync(execW("svc", 0, "sleep", "1000"))
	after := h.waitState("svc", supervisor.StateRunning, nil)
	if after.PID != before.PID || after.Restarts != before.Restarts {
		t.Fatalf("after restart pid %d restarts %d, want pid %d restarts %d", after.PID, after.Restarts, before.PID, before.Restarts)
	}
	if n := len(h.events("svc", "started")); n != 1 {
		t.Errorf("%d started events, want exactly 1", n)
	}
	if n := len(h.events("svc", "adopted")); n != 1 {
		t.Errorf("%d adopted events, want 1", n)
	}
}

func TestSupervisor_RestartDeleteReconfigure(t *testing.T) {
	h := newHarness(t, nil)
	w := execW("svc", 0, "sleep", "1000")
	h.sync(w)
	first := h.waitState("svc", supervisor.StateRunning, nil)

	if err := h.sup.Restart(context.Background(), "svc"); err != nil {
		t.Fatal(err)
	}
	second := h.waitState("svc", supervisor.StateRunning, func(s supervisor.Status) error {
		if s.PID == first.PID {
			return errors.New("same pid")
		}
		return nil
	})
	if alive(first.PID) {
		t.Error("old instance alive after restart")
	}

	w.Spec.Exec.Command = []string{"sleep", "999"}
	h.sync(w)
	third := h.waitState("svc", supervisor.StateRunning, func(s supervisor.Status) error {
		if s.PID == second.PID {
			return errors.New("same pid")
		}
		return nil
	})

	h.sync()
	if alive(third.PID) {
		t.Error("deleted workload still running after Sync returned")
	}
	if len(h.sup.Status()) != 0 {
		t.Errorf("status after delete: %+v", h.sup.Status())
	}
	if err := h.sup.Restart(context.Background(), "svc"); !errors.Is(err, supervisor.ErrWorkloadNotFound) {
		t.Errorf("restart of deleted: %v", err)
	}
}

func TestSupervisor_ShutdownStopsEverythingAndKeepsDesiredState(t *testing.T) {
	h := newHarness(t, nil)
	crasher := execW("crasher", 0, "sh", "-c", "exit 1")
	crasher.Spec.Restart.Backoff = manifest.Backoff{Initial: dur(time.Hour), Max: dur(time.Hour)}
	h.sync(execW("a", 0, "sleep", "1000"), execW("b", 0, "sleep", "1000"), crasher)
	a := h.waitState("a", supervisor.StateRunning, nil)
	b := h.waitState("b", supervisor.StateRunning, nil)
	h.waitState("crasher", supervisor.StateBackoff, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.sup.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(a.PID) || alive(b.PID) {
		t.Fatal("workloads alive after Shutdown returned")
	}
	for _, st := range h.sup.Status() {
		if st.State == supervisor.StateRunning || st.State == supervisor.StateBackoff {
			t.Errorf("%s is %s after shutdown", st.Name, st.State)
		}
	}
	if n := len(h.events("a", "deleted")); n != 0 {
		t.Errorf("shutdown deleted a workload")
	}
}

func TestSupervisor_MissingRuntimeBlocks(t *testing.T) {
	h := newHarness(t, nil)
	h.sync(supervisor.Workload{Name: "box", Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeContainer, Container: &manifest.ContainerSpec{Image: "x"}}})
	st := h.waitState("box", supervisor.StateBlocked, nil)
	if st.Reason != "runtime container is not available on this node" {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestSupervisor_UnavailableRuntimeSaysWhy(t *testing.T) {
	h := newHarness(t, func(c *supervisor.Config) {
		c.Unavailable = map[manifest.Runtime]string{manifest.RuntimeContainer: "no Docker engine at unix:///nowhere.sock: refused"}
	})
	h.sync(supervisor.Workload{Name: "box", Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeContainer, Container: &manifest.ContainerSpec{Image: "x"}}})
	st := h.waitState("box", supervisor.StateBlocked, nil)
	if want := "runtime container: no Docker engine at unix:///nowhere.sock: refused"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
}
