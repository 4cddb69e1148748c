package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/logfile"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// StateStore is the part of the agent's store the supervisor needs.
type StateStore interface {
	Instance(name string) (store.Instance, bool, error)
	PutInstance(name string, in store.Instance) error
	DeleteInstance(name string) error
	AppendEvent(e store.Event) (store.Event, error)
}

// Config wires a supervisor. Drivers, Store, LogDir are required.
type Config struct {
	// Drivers by runtime; a workload whose runtime is missing is blocked.
	Drivers map[manifest.Runtime]driver.Driver
	// Unavailable says why a runtime missing from Drivers is missing
	// ("no Docker engine at ..."); it becomes the blocked reason.
	Unavailable map[manifest.Runtime]string
	Store       StateStore
	// LogDir receives <workload>.log files.
	LogDir string
	// Artifacts resolves "sha256:<hex>" module references and image
	// archives.
	Artifacts artifact.Cache
	// FetchHold says why large artifacts are not being fetched now ("" when
	// they are), for the reason of a workload that waits for its image.
	// Nil means they always are.
	FetchHold func() string
	// Env is given to every workload, under its own variables (a
	// workload's own value of a name wins): where the node's broker is.
	Env map[string]string
	// Secrets delivers the secrets workloads reference; nil blocks every
	// workload that references one.
	Secrets SecretOpener
	// Capacity the workloads' declared resources must fit in.
	CapacityMemory   int64
	CapacityMilliCPU int64
	// MemAvailable reads the node's available memory. Nil disables pressure
	// eviction.
	MemAvailable func() (int64, error)
	// PressureThreshold: below this MemAvailable the least important
	// workloads are stopped, one per PressureInterval.
	PressureThreshold int64
	PressureInterval  time.Duration // default 1s
	StopGrace         time.Duration // default 10s
	Clock             clock.Clock   // default clock.Real
	Logger            *slog.Logger  // default slog.Default
}

// SecretOpener delivers the secrets of a workload's spec.secrets.
type SecretOpener interface {
	// Open opens sealed (the plan's) and returns the environment variables
	// refs set and the host directory holding the workload's secret files
	// ("" when there are none), which it writes; an error says why the
	// workload cannot have its secrets, and blocks it.
	Open(workload string, refs []manifest.SecretRef, sealed []wire.SealedSecret) (env map[string]string, dir string, err error)
	// Remove deletes the workload's secret files.
	Remove(workload string) error
}

// Workload is one desired workload as the supervisor receives it.
type Workload struct {
	Name string
	Spec manifest.WorkloadSpec
	// Image is the archive a container workload's image comes from when
	// the hub's image store has it; nil otherwise.
	Image *Image `json:",omitempty"`
	// Secrets are the sealed secrets spec.secrets names, from the plan;
	// SecretsBlocked says why the plan could not carry them (the workload
	// is blocked while it is set).
	Secrets        []wire.SealedSecret `json:",omitempty"`
	SecretsBlocked string              `json:",omitempty"`
}

// Image is an image archive in the artifact cache.
type Image struct {
	Ref  string
	Size int64
}

// Supervisor runs a node's workloads. Create with New, then Start; Close
// stops supervising and leaves the workloads running.
type Supervisor struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	inbox  chan func()
	wg     sync.WaitGroup

	// Owned by the loop goroutine.
	ws map[string]*workload
	// gone holds removal channels to close once the status snapshot no
	// longer lists their workloads.
	gone []chan struct{}
	// draining is set by Shutdown; drained is closed once no instance is left.
	draining bool
	drained  chan struct{}

	mu       sync.Mutex
	statuses []Status // snapshot published by the loop; guarded by mu
	changed  chan struct{}
}

// workload is the loop's record of one desired workload.
type workload struct {
	name   string
	spec   manifest.WorkloadSpec
	image  *Image
	sealed []wire.SealedSecret
	// secretsBlocked is the plan's reason; secretsErr why opening them
	// failed (cleared by a new spec or a restart).
	secretsBlocked string
	secretsErr     string
	specJSON       string // of spec, image and secrets

	inst     *instance // the current instance, from start request until its exit is seen
	restarts int
	failures int // consecutive failed runs, for backoff

	timer     clock.Timer   // backoff timer; nil when not backing off
	reason    string        // why it is in backoff, stopped or failed
	finished  State         // StateStopped or StateFailed once the policy gives up; "" otherwise
	blockedBy string        // admission verdict; "" when admitted
	evicted   string        // memory-pressure reason; "" when not evicted
	waiting   string        // why it cannot start yet (an artifact on its way); "" otherwise
	waitedFor string        // the artifact it last waited for, so that waiting is one event
	removing  chan struct{} // non-nil once removal was requested; closed when gone
	health    string
}

// instance is one start of a workload.
type instance struct {
	gen        int
	recovering bool
	started    bool
	handle     driver.Handle
	pid        int
	startedAt  time.Time
	limits     string
	stopping   string // why the supervisor stopped it; "" if it was not asked to stop
	stopHealth context.CancelFunc
}

// New returns a supervisor; nothing runs until Start.
func New(cfg Config) *Supervisor {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PressureInterval <= 0 {
		cfg.PressureInterval = time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{cfg: cfg, ctx: ctx, cancel: cancel, inbox: make(chan func(), 64),
		ws: map[string]*workload{}, changed: make(chan struct{}, 1)}
}

// Start runs the loop and, if configured, the memory-pressure monitor.
func (s *Supervisor) Start() {
	s.wg.Add(1)
	go s.loop()
	if s.cfg.MemAvailable != nil && s.cfg.PressureThreshold > 0 {
		s.wg.Add(1)
		go s.watchPressure()
	}
}

// Close stops supervising. Running workloads are left running: the next
// agent adopts them.
func (s *Supervisor) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Supervisor) loop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case f := <-s.inbox:
			f()
			s.publish()
			for _, ch := range s.gone {
				close(ch)
			}
			s.gone = s.gone[:0]
			if s.drained != nil && s.idle() {
				close(s.drained)
				s.drained = nil
			}
		}
	}
}

// post runs f on the loop goroutine. It reports false if the supervisor is
// closed.
func (s *Supervisor) post(f func()) bool {
	select {
	case s.inbox <- f:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// call runs f on the loop and waits for it.
func (s *Supervisor) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if !s.post(func() { f(); close(done) }) {
		return context.Canceled
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sync makes ws the complete desired set. New workloads are adopted from
// their stored handle or started; changed ones are replaced; missing ones
// are stopped, and Sync returns once they are gone.
func (s *Supervisor) Sync(ctx context.Context, ws []Workload) error {
	var gone []chan struct{}
	err := s.call(ctx, func() {
		want := make(map[string]bool, len(ws))
		for _, d := range ws {
			want[d.Name] = true
			s.upsert(d)
		}
		for name, w := range s.ws {
			if !want[name] {
				gone = append(gone, s.remove(w))
			}
		}
		s.reconcile()
	})
	if err != nil {
		return err
	}
	for _, ch := range gone {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Restart replaces the running instance of name, or starts it again if the
// policy had given up on it. It does not count as a restart for the policy.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	var found bool
	err := s.call(ctx, func() {
		w, ok := s.ws[name]
		if !ok || w.removing != nil {
			return
		}
		found = true
		s.event(w.name, "restart-requested", "restart requested")
		s.reset(w)
		if w.inst != nil {
			s.stop(w, "restart")
		}
		s.reconcile()
	})
	if err == nil && !found {
		return fmt.Errorf("restart %s: %w", name, ErrWorkloadNotFound)
	}
	return err
}

// Shutdown stops every workload instance and returns once all are gone. The
// desired state is untouched: the next agent starts them again. `atoll dev`
// uses it so that Ctrl-C leaves nothing running.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	err := s.call(ctx, func() {
		s.draining, s.drained = true, done
		for _, w := range s.ws {
			s.cancelBackoff(w)
		}
		s.reconcile()
	})
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Supervisor) idle() bool {
	for _, w := range s.ws {
		if w.inst != nil {
			return false
		}
	}
	return true
}

// Changes is signalled, without blocking the supervisor, whenever the
// status of any workload changes; a slow reader sees one signal for many
// changes.
func (s *Supervisor) Changes() <-chan struct{} { return s.changed }

// Retry starts the workloads that were waiting for something outside the
// supervisor's view (an artifact that arrived), and refreshes the reason of
// those that still wait (a download's progress). Waiting for the same
// artifact is one "waiting" event, however often Retry runs.
func (s *Supervisor) Retry(ctx context.Context) error {
	return s.call(ctx, func() {
		for _, w := range s.ws {
			w.waiting = ""
		}
		s.reconcile()
	})
}

// Status returns every workload's status, sorted by name.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.statuses...)
}

// upsert adds a new workload or updates the spec of a known one.
func (s *Supervisor) upsert(d Workload) {
	b, _ := json.Marshal(d)
	w, ok := s.ws[d.Name]
	if !ok {
		w = &workload{name: d.Name, spec: d.Spec, image: d.Image, sealed: d.Secrets, secretsBlocked: d.SecretsBlocked, specJSON: string(b)}
		s.ws[d.Name] = w
		s.adopt(w)
		return
	}
	if w.specJSON == string(b) {
		return
	}
	w.spec, w.image, w.sealed, w.secretsBlocked, w.specJSON = d.Spec, d.Image, d.Secrets, d.SecretsBlocked, string(b)
	s.event(w.name, "configured", "spec changed")
	s.reset(w)
	if w.inst != nil {
		s.stop(w, "reconfigure")
	}
}

// reset clears what the restart policy remembers: a changed spec or an
// explicit restart deserves a fresh start.
func (s *Supervisor) reset(w *workload) {
	w.finished, w.reason, w.failures, w.waiting, w.secretsErr = "", "", 0, "", ""
	s.cancelBackoff(w)
}

// remove starts removing w and returns a channel closed once it is gone.
func (s *Supervisor) remove(w *workload) chan struct{} {
	if w.removing != nil {
		return w.removing
	}
	w.removing = make(chan struct{})
	s.cancelBackoff(w)
	if w.inst != nil {
		s.stop(w, "delete")
	} else {
		s.forget(w)
	}
	return w.removing
}

func (s *Supervisor) forget(w *workload) {
	s.removeSecrets(w)
	delete(s.ws, w.name)
	s.gone = append(s.gone, w.removing)
	if err := s.cfg.Store.DeleteInstance(w.name); err != nil {
		s.cfg.Logger.Error("forget instance", "workload", w.name, "err", err)
	}
	s.event(w.name, "deleted", "workload removed from the node")
}

// adopt reattaches to the instance a previous agent left running, if the
// store has a handle for it; reconcile starts the workload otherwise.
func (s *Supervisor) adopt(w *workload) {
	in, ok, err := s.cfg.Store.Instance(w.name)
	if err != nil {
		s.cfg.Logger.Error("read instance", "workload", w.name, "err", err)
	}
	if !ok {
		return
	}
	w.restarts = in.Restarts
	if in.Finished != "" {
		// The policy gave up on it before the agent restarted: it stays
		// finished until its spec changes or it is restarted by hand.
		w.finished, w.reason = State(in.Finished), in.Reason
		return
	}
	drv := s.cfg.Drivers[w.spec.Runtime]
	if in.Handle == nil || drv == nil || in.Handle.Driver != drv.Name() {
		return
	}
	inst := s.newInstance(w)
	inst.recovering = true
	h := *in.Handle
	go func() {
		err := drv.Recover(s.ctx, h)
		var info driver.Info
		if err == nil {
			info, err = drv.Inspect(s.ctx, h)
		}
		s.post(func() { s.recovered(w, inst, h, info, in.StartedAt, err) })
	}()
}

func (s *Supervisor) recovered(w *workload, inst *instance, h driver.Handle, info driver.Info, startedAt time.Time, err error) {
	inst.recovering = false
	if err != nil {
		w.inst = nil
		s.event(w.name, "not-recovered", fmt.Sprintf("previous instance not running (%v); starting anew", err))
		s.reconcile()
		return
	}
	if startedAt.IsZero() {
		startedAt = info.StartedAt
	}
	s.event(w.name, "adopted", fmt.Sprintf("adopted running instance (pid %d)", info.PID))
	s.running(w, inst, h, info, startedAt)
}

func (s *Supervisor) newInstance(w *workload) *instance {
	gen := 1
	if w.inst != nil {
		gen = w.inst.gen + 1
	}
	w.inst = &instance{gen: gen}
	return w.inst
}

// reconcile recomputes admission and moves every workload toward what it
// should be doing now.
func (s *Supervisor) reconcile() {
	var ds []demand
	for _, w := range s.ws {
		if w.removing == nil && w.finished == "" {
			ds = append(ds, demand{name: w.name, priority: w.spec.Priority,
				memory: w.spec.Resources.MemoryBytes(), milliCPU: w.spec.Resources.MilliCPU()})
		}
	}
	blocked := admit(ds, capacity{memory: s.cfg.CapacityMemory, milliCPU: s.cfg.CapacityMilliCPU})
	for _, w := range s.ws {
		w.blockedBy = blocked[w.name]
		if w.removing == nil && s.cfg.Drivers[w.spec.Runtime] == nil {
			w.blockedBy = fmt.Sprintf("runtime %s is not available on this node", w.spec.Runtime)
			if why := s.cfg.Unavailable[w.spec.Runtime]; why != "" {
				w.blockedBy = fmt.Sprintf("runtime %s: %s", w.spec.Runtime, why)
			}
		}
		if why := s.secretsReason(w); w.removing == nil && why != "" {
			w.blockedBy = why
		}
		s.step(w)
	}
}

// mayRun reports whether w should have an instance now.
func (s *Supervisor) mayRun(w *workload) bool {
	return !s.draining && w.removing == nil && w.finished == "" && w.blockedBy == "" && w.evicted == ""
}

func (s *Supervisor) step(w *workload) {
	switch {
	case w.inst != nil:
		if !s.mayRun(w) && w.inst.stopping == "" && !w.inst.recovering {
			s.stop(w, s.stopReason())
		}
	case s.mayRun(w) && w.timer == nil && w.waiting == "":
		s.start(w)
	}
}

func (s *Supervisor) stopReason() string {
	if s.draining {
		return "agent shutdown"
	}
	return "not admitted"
}

func (s *Supervisor) start(w *workload) {
	drv := s.cfg.Drivers[w.spec.Runtime]
	spec, err := s.driverSpec(w)
	if missing, ok := errors.AsType[*missingArtifactError](err); ok {
		if w.waitedFor != missing.ref {
			w.waitedFor = missing.ref
			s.event(w.name, "waiting", err.Error())
		}
		w.waiting = err.Error()
		return
	}
	if se, ok := errors.AsType[*secretsError](err); ok {
		w.secretsErr, w.blockedBy = se.Error(), se.Error()
		s.event(w.name, "blocked", se.Error())
		return
	}
	if err != nil {
		w.finished, w.reason = StateFailed, err.Error()
		s.event(w.name, "start-failed", err.Error())
		return
	}
	w.waiting, w.waitedFor = "", ""
	inst := s.newInstance(w)
	restarts := w.restarts
	go func() {
		h, err := drv.Start(s.ctx, spec)
		var info driver.Info
		now := s.cfg.Clock.Now()
		if err == nil {
			if info, err = drv.Inspect(s.ctx, h); err != nil {
				// The instance may already have exited; Wait will tell.
				info = driver.Info{StartedAt: now}
				err = nil
			}
			// Persist the handle before the workload is reported running, so
			// an agent killed from here on adopts instead of double-starting.
			if perr := s.cfg.Store.PutInstance(w.name, store.Instance{Handle: &h, Restarts: restarts, StartedAt: now}); perr != nil {
				s.cfg.Logger.Error("persist handle", "workload", w.name, "err", perr)
			}
		}
		s.post(func() {
			if err != nil {
				s.startFailed(w, inst, err)
				return
			}
			s.event(w.name, "started", fmt.Sprintf("started (pid %d)", info.PID))
			s.running(w, inst, h, info, now)
		})
	}()
}

func (s *Supervisor) startFailed(w *workload, inst *instance, err error) {
	w.inst = nil
	s.removeSecrets(w)
	s.event(w.name, "start-failed", err.Error())
	if w.removing != nil {
		s.forget(w)
		return
	}
	s.backoff(w, 0, "start failed: "+err.Error())
}

// running records a started or adopted instance and watches it.
func (s *Supervisor) running(w *workload, inst *instance, h driver.Handle, info driver.Info, startedAt time.Time) {
	inst.started, inst.handle, inst.pid, inst.limits, inst.startedAt = true, h, info.PID, info.Limits, startedAt
	drv := s.cfg.Drivers[w.spec.Runtime]
	go func() {
		exit, err := drv.Wait(s.ctx, h)
		if s.ctx.Err() != nil {
			return // the agent is shutting down; the workload lives on
		}
		if err != nil {
			exit.Err = err
		}
		s.post(func() { s.exited(w, inst, exit) })
	}()
	hctx, cancel := context.WithCancel(s.ctx)
	inst.stopHealth = cancel
	w.health = ""
	if hs := w.spec.Health; hs != nil {
		w.health = "unknown"
		hc := healthCheck{spec: *hs, clock: s.cfg.Clock, report: func(ok bool, err error, last bool) {
			s.post(func() { s.healthResult(w, inst, ok, err, last) })
		}}
		go hc.run(hctx)
	}
	if inst.stopping != "" || !s.mayRun(w) {
		why := inst.stopping
		inst.stopping = ""
		if why == "" {
			why = s.stopReason()
		}
		s.stop(w, why)
	}
}

func (s *Supervisor) healthResult(w *workload, inst *instance, ok bool, err error, last bool) {
	if w.inst != inst || inst.stopping != "" {
		return
	}
	if ok {
		w.health = "healthy"
		return
	}
	w.health = "unhealthy"
	if last {
		s.alert(w.name, "unhealthy", err.Error())
		w.reason = err.Error()
		s.stop(w, "unhealthy")
	}
}

// stop asks the driver to stop w's instance; exited follows.
func (s *Supervisor) stop(w *workload, why string) {
	inst := w.inst
	if inst.stopping != "" {
		return
	}
	inst.stopping = why
	if !inst.started {
		return // running() stops it as soon as the start completes
	}
	inst.stopHealth()
	drv, h := s.cfg.Drivers[w.spec.Runtime], inst.handle
	go func() {
		if err := drv.Stop(s.ctx, h, s.cfg.StopGrace); err != nil && s.ctx.Err() == nil {
			s.cfg.Logger.Error("stop workload", "workload", w.name, "err", err)
		}
	}()
}

func (s *Supervisor) exited(w *workload, inst *instance, exit driver.Exit) {
	if w.inst != inst {
		return
	}
	inst.stopHealth()
	w.inst = nil
	w.health = ""
	s.removeSecrets(w)
	ranFor := s.cfg.Clock.Now().Sub(inst.startedAt)
	desc := describeExit(exit)
	switch {
	case w.removing != nil:
		s.forget(w)
		return
	case inst.stopping == "unhealthy":
		s.backoff(w, ranFor, w.reason)
		return
	case inst.stopping != "":
		s.event(w.name, "stopped", "stopped: "+inst.stopping)
		s.reconcile() // a restart or new spec starts again; eviction and admission keep it down
		return
	}
	s.event(w.name, "exited", desc)
	policy := w.spec.Restart.Policy
	switch {
	case policy == manifest.RestartNever && exit.Failed():
		s.finish(w, StateFailed, desc+"; restart policy never")
	case policy == manifest.RestartNever || policy == manifest.RestartOnFailure && !exit.Failed():
		s.finish(w, StateStopped, desc)
	default:
		s.backoff(w, ranFor, desc)
	}
}

// finish records that the restart policy gave up on w, durably, so an agent
// restart does not start it again.
func (s *Supervisor) finish(w *workload, state State, reason string) {
	w.finished, w.reason = state, reason
	in := store.Instance{Restarts: w.restarts, Finished: string(state), Reason: reason}
	if err := s.cfg.Store.PutInstance(w.name, in); err != nil {
		s.cfg.Logger.Error("persist finished state", "workload", w.name, "err", err)
	}
}

// backoff schedules the next start of w after the policy's delay.
func (s *Supervisor) backoff(w *workload, ranFor time.Duration, why string) {
	b := backoff{
		initial:    durOr(w.spec.Restart.Backoff.Initial, 100*time.Millisecond),
		max:        durOr(w.spec.Restart.Backoff.Max, 5*time.Minute),
		resetAfter: durOr(w.spec.Restart.Backoff.ResetAfter, 10*time.Second),
	}
	var d time.Duration
	d, w.failures = b.next(w.failures, ranFor)
	w.restarts++
	w.reason = fmt.Sprintf("%s; restart %d in %v", why, w.restarts, d)
	s.event(w.name, "backoff", w.reason)
	if w.failures == crashLoopAfter {
		s.alert(w.name, "crash-loop", fmt.Sprintf("crash loop: %d failures in a row, none running %v; last: %s",
			w.failures, b.resetAfter, w.reason))
	}
	t := s.cfg.Clock.NewTimer(d)
	w.timer = t
	go func() {
		select {
		case <-t.C():
			s.post(func() {
				if w.timer == t {
					w.timer = nil
					w.reason = ""
					s.reconcile()
				}
			})
		case <-s.ctx.Done():
			t.Stop()
		}
	}()
}

func (s *Supervisor) cancelBackoff(w *workload) {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

func describeExit(e driver.Exit) string {
	switch {
	case e.Err != nil:
		return "failed: " + e.Err.Error()
	case e.Signal != "":
		return "killed by " + e.Signal
	case e.Code == -1:
		return "exited (status unknown)"
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// crashLoopAfter is how many failures in a row, each before the backoff's
// reset time, make a crash loop: its crash-loop event is sent once per
// loop (a run that lasts ends the loop).
const crashLoopAfter = 3

// alertLogLines is how many log lines an alerting event carries.
const alertLogLines = 10

func (s *Supervisor) event(name, typ, msg string) {
	s.record(store.Event{Time: s.cfg.Clock.Now(), Workload: name, Type: typ, Message: msg})
}

// alert records an event that calls for attention, with the last lines
// of the workload's log attached.
func (s *Supervisor) alert(name, typ, msg string) {
	e := store.Event{Time: s.cfg.Clock.Now(), Workload: name, Type: typ, Message: msg}
	if tail, err := logfile.Tail(LogPath(s.cfg.LogDir, name), alertLogLines); err == nil {
		e.Log = string(tail)
	} else {
		s.cfg.Logger.Debug("log tail for alert", "workload", name, "err", err)
	}
	s.record(e)
}

func (s *Supervisor) record(e store.Event) {
	if _, err := s.cfg.Store.AppendEvent(e); err != nil {
		s.cfg.Logger.Error("record event", "workload", e.Workload, "type", e.Type, "err", err)
	}
	s.cfg.Logger.Info(e.Message, "workload", e.Workload, "event", e.Type)
}
