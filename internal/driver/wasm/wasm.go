// Package wasm is the driver that runs WASI preview 1 modules inside the
// agent process with wazero.
//
// Every workload instance gets its own wazero Runtime, so each can carry its
// own memory limit, and all runtimes share one compilation cache, which can
// be backed by a directory so that compiling the same module again after an
// agent restart is cheap. A WASM workload lives and dies with the agent
// process: Recover only reattaches to instances started by the same Driver
// value and reports driver.ErrNotRunning for everything else.
package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"atoll.dev/atoll/internal/driver"
)

// Name is the runtime name of this driver.
const Name = "wasm"

// stateVersion is the encoding version of Handle.State.
const stateVersion = 1

// Config configures a Driver.
type Config struct {
	// CacheDir holds wazero's on-disk compilation cache. Empty keeps the
	// cache in memory only, so every agent start compiles modules anew.
	CacheDir string
}

// Driver runs WASI preview 1 modules. It implements driver.Driver.
// The zero value is not usable; call New.
type Driver struct {
	cache wazero.CompilationCache

	mu        sync.Mutex
	closed    bool
	starting  sync.WaitGroup // Start calls in flight; Close waits for them
	instances map[string]*instance
}

var _ driver.Driver = (*Driver)(nil)

// New returns a Driver whose compilation cache lives in cfg.CacheDir (created
// if missing). Call Close to release it.
func New(cfg Config) (*Driver, error) {
	var cache wazero.CompilationCache
	if cfg.CacheDir == "" {
		cache = wazero.NewCompilationCache()
	} else {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open wasm compilation cache %s: %w", cfg.CacheDir, err)
		}
		cache = c
	}
	return &Driver{cache: cache, instances: make(map[string]*instance)}, nil
}

// Name returns "wasm".
func (d *Driver) Name() string { return Name }

// state is what Handle.State holds.
type state struct {
	// ID names the instance; it is random and only meaningful to the Driver
	// value that started it.
	ID string `json:"id"`
	// SHA256 is the hex digest of the module's bytes.
	SHA256 string `json:"sha256"`
	// Module is the path the module was read from.
	Module string `json:"module"`
}

// instance is one running (or finished) module.
type instance struct {
	id        string
	name      string
	startedAt time.Time
	limits    string

	cancel  context.CancelFunc
	stopped atomic.Bool // set before cancel when the agent ends the module

	done chan struct{} // closed once the module has ended and is cleaned up
	exit driver.Exit   // valid after done is closed
}

func (in *instance) running() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// Start compiles the module named by spec.WASM.ModulePath (through the
// compilation cache), instantiates it with WASI preview 1 and runs its
// _start function in a new goroutine. It returns once the module is running;
// a module that cannot be read, compiled or instantiated is an error.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	if spec.WASM == nil {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: spec has no wasm config", spec.Name)
	}
	if spec.WASM.ModulePath == "" {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: module path is empty", spec.Name)
	}
	if spec.LogPath == "" {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: log path is empty", spec.Name)
	}
	pages, err := memoryPages(spec.MemoryLimit)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: %w", spec.Name, err)
	}
	if !d.beginStart() {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: driver is closed", spec.Name)
	}
	defer d.starting.Done()

	path := spec.WASM.ModulePath
	code, err := os.ReadFile(path)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: read module: %w", spec.Name, err)
	}
	sum := sha256.Sum256(code)

	rt, compiled, err := d.compile(ctx, code, pages)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: compile module %s: %w", spec.Name, path, err)
	}
	// From here on every failure must close rt.
	fail := func(format string, args ...any) (driver.Handle, error) {
		_ = rt.Close(context.WithoutCancel(ctx))
		return driver.Handle{}, fmt.Errorf("start wasm workload %q: "+format, append([]any{spec.Name}, args...)...)
	}
	if _, ok := compiled.ExportedFunctions()["_start"]; !ok {
		return fail("module %s exports no _start function (only WASI command modules are supported)", path)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail("instantiate wasi_snapshot_preview1: %w", err)
	}

	logFile, err := openLog(spec.LogPath)
	if err != nil {
		return fail("%w", err)
	}

	// The module outlives Start's ctx; keep its values, drop its deadline.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	args := append([]string{spec.Name}, spec.WASM.Args...)
	modCfg := wazero.NewModuleConfig().
		WithName(spec.Name).
		WithStartFunctions(). // _start runs in our goroutine, not in InstantiateModule
		WithArgs(args...).
		WithStdout(logFile).
		WithStderr(logFile).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		// Like WithSysNanosleep, but a sleeping module wakes up as soon as it
		// is stopped instead of finishing its sleep.
		WithNanosleep(func(ns int64) { sleepCtx(runCtx, time.Duration(ns)) })
	for _, k := range slices.Sorted(maps.Keys(spec.WASM.Env)) {
		modCfg = modCfg.WithEnv(k, spec.WASM.Env[k])
	}
	if len(spec.WASM.Mounts) > 0 {
		fsCfg := wazero.NewFSConfig()
		for _, m := range spec.WASM.Mounts {
			if m.ReadOnly {
				fsCfg = fsCfg.WithReadOnlyDirMount(m.HostPath, m.Path)
			} else {
				fsCfg = fsCfg.WithDirMount(m.HostPath, m.Path)
			}
		}
		modCfg = modCfg.WithFSConfig(fsCfg)
	}

	mod, err := rt.InstantiateModule(runCtx, compiled, modCfg)
	if err != nil {
		cancel()
		_ = logFile.Close()
		return fail("instantiate module %s: %w", path, err)
	}
	start := mod.ExportedFunction("_start")

	in := &instance{
		id:        rand.Text(),
		name:      spec.Name,
		startedAt: time.Now(),
		limits:    describeLimits(spec.MemoryLimit, pages, spec.MilliCPU),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	handle, err := driver.NewHandle(Name, stateVersion, state{ID: in.id, SHA256: hex.EncodeToString(sum[:]), Module: path})
	if err != nil {
		cancel()
		_ = logFile.Close()
		return fail("encode handle state: %w", err)
	}

	d.mu.Lock()
	d.instances[in.id] = in
	d.mu.Unlock()

	go in.run(runCtx, rt, start, logFile)

	return handle, nil
}

// run calls _start, records how the module ended and releases everything the
// instance holds.
func (in *instance) run(ctx context.Context, rt wazero.Runtime, start api.Function, logFile *os.File) {
	_, err := start.Call(ctx)
	in.exit = in.classify(err)
	in.cancel()
	_ = rt.Close(context.Background())
	_ = logFile.Close()
	close(in.done)
}

// classify turns the result of _start into an Exit.
func (in *instance) classify(err error) driver.Exit {
	if err == nil {
		return driver.Exit{Code: 0}
	}
	var exitErr *sys.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if in.stopped.Load() && (code == sys.ExitCodeContextCanceled || code == sys.ExitCodeDeadlineExceeded) {
			// Stopped by the agent: WASI has no signals, so the module was
			// killed outright and has no exit status of its own.
			return driver.Exit{Code: -1}
		}
		return driver.Exit{Code: int(code)}
	}
	return driver.Exit{Code: -1, Err: fmt.Errorf("run wasm workload %q: %w", in.name, err)}
}

// Recover reports whether the instance behind h is still running in this
// Driver. WASM workloads run inside the agent process, so after an agent
// restart Recover always returns an error wrapping driver.ErrNotRunning.
func (d *Driver) Recover(_ context.Context, h driver.Handle) error {
	st, err := decodeHandle(h)
	if err != nil {
		if h.Driver != Name {
			return fmt.Errorf("recover wasm workload: %w", err)
		}
		// Whatever the handle said, nothing of it runs in this process.
		return fmt.Errorf("recover wasm workload: %w: %w", err, driver.ErrNotRunning)
	}
	in := d.lookup(st.ID)
	if in == nil || !in.running() {
		return fmt.Errorf("recover wasm workload: instance %s does not run in this agent process (wasm workloads end with the agent): %w",
			st.ID, driver.ErrNotRunning)
	}
	return nil
}

// Wait blocks until the module ends or ctx is done. A normal return from
// _start is exit code 0, proc_exit(n) is code n, a trap is Code -1 with Err
// set, and a module ended by Stop or Close is Code -1.
func (d *Driver) Wait(ctx context.Context, h driver.Handle) (driver.Exit, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Exit{}, fmt.Errorf("wait wasm workload: %w", err)
	}
	in := d.lookup(st.ID)
	if in == nil {
		return driver.Exit{}, fmt.Errorf("wait wasm workload: instance %s: %w", st.ID, driver.ErrNotRunning)
	}
	select {
	case <-in.done:
	case <-ctx.Done():
		return driver.Exit{}, fmt.Errorf("wait wasm workload %q: %w", in.name, ctx.Err())
	}
	// The exit has been collected; forget the instance.
	d.mu.Lock()
	if d.instances[in.id] == in {
		delete(d.instances, in.id)
	}
	d.mu.Unlock()
	return in.exit, nil
}

// Stop ends the module and returns once it is gone. WASI modules have no
// signals to catch, so there is nothing to be graceful about: the module's
// context is cancelled at once and grace is not used. Stopping a module that
// has already ended, or that this Driver does not know, is not an error.
func (d *Driver) Stop(ctx context.Context, h driver.Handle, _ time.Duration) error {
	st, err := decodeHandle(h)
	if err != nil {
		return fmt.Errorf("stop wasm workload: %w", err)
	}
	in := d.lookup(st.ID)
	if in == nil {
		return nil
	}
	in.stop()
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop wasm workload %q: %w", in.name, ctx.Err())
	}
}

func (in *instance) stop() {
	in.stopped.Store(true)
	in.cancel()
}

// Inspect describes a running module. PID is always 0: the module runs
// inside the agent.
func (d *Driver) Inspect(_ context.Context, h driver.Handle) (driver.Info, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect wasm workload: %w", err)
	}
	in := d.lookup(st.ID)
	if in == nil || !in.running() {
		return driver.Info{}, fmt.Errorf("inspect wasm workload: instance %s: %w", st.ID, driver.ErrNotRunning)
	}
	return driver.Info{PID: 0, StartedAt: in.startedAt, Limits: in.limits}, nil
}

// Close stops every module this Driver runs, waits for them to end and
// releases the compilation cache. The Driver cannot start modules afterwards.
// If ctx ends first, the cache stays open and Close may be called again.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()

	// Let Start calls in flight finish registering (or failing) first, so
	// that every module is stopped and nothing compiles on a closed cache.
	started := make(chan struct{})
	go func() {
		d.starting.Wait()
		close(started)
	}()
	select {
	case <-started:
	case <-ctx.Done():
		return fmt.Errorf("close wasm driver: wait for starts in flight: %w", ctx.Err())
	}

	d.mu.Lock()
	running := slices.Collect(maps.Values(d.instances))
	d.mu.Unlock()

	for _, in := range running {
		in.stop()
	}
	for _, in := range running {
		select {
		case <-in.done:
		case <-ctx.Done():
			return fmt.Errorf("close wasm driver: wait for %q to end: %w", in.name, ctx.Err())
		}
	}
	if err := d.cache.Close(ctx); err != nil {
		return fmt.Errorf("close wasm driver: close compilation cache: %w", err)
	}
	return nil
}

// beginStart registers a Start in flight, or reports false if the Driver is
// closed. The caller must call d.starting.Done when it returns true.
func (d *Driver) beginStart() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.starting.Add(1)
	return true
}

func (d *Driver) lookup(id string) *instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.instances[id]
}

// compile makes a runtime for one instance and compiles code in it through
// the shared compilation cache. pages is the memory limit in wasm pages,
// 0 for wazero's default (the wasm32 maximum of 4Gi).
func (d *Driver) compile(ctx context.Context, code []byte, pages uint32) (wazero.Runtime, wazero.CompiledModule, error) {
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(d.cache).
		WithCloseOnContextDone(true)
	if pages > 0 {
		cfg = cfg.WithMemoryLimitPages(pages)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, nil, err
	}
	return rt, compiled, nil
}

func decodeHandle(h driver.Handle) (state, error) {
	var st state
	if err := h.Decode(Name, stateVersion, &st); err != nil {
		return state{}, err
	}
	if st.ID == "" {
		return state{}, fmt.Errorf("decode handle: no instance id: %w", driver.ErrBadHandle)
	}
	return st, nil
}

// openLog opens path for appending, creating it and its directory if needed.
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return f, nil
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
