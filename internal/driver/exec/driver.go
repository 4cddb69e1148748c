// Package exec is the driver for plain processes. Each workload runs in its
// own session and process group, detached from the agent (stdin /dev/null,
// output appended straight to its log file), so it survives the agent's
// death and a new agent can recover it from its handle. Memory and CPU
// limits are enforced with cgroups (v2 or v1) when the node has a writable
// hierarchy, and Inspect says plainly when they are not.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/cgroup"
	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/driver"
)

// driverName is the driver's name, in Handle.Driver.
const driverName = "exec"

// Config configures a Driver.
type Config struct {
	// CgroupParent is the cgroup, relative to each hierarchy's mount, under
	// which every workload gets a cgroup named after it. Default "atoll".
	CgroupParent string
	// CgroupRoot is where cgroup hierarchies are mounted. Default
	// cgroup.DefaultRoot; a directory without cgroups disables enforcement.
	CgroupRoot string
	// Clock times Stop's grace period and /proc polling. Default clock.Real.
	Clock clock.Clock
}

// Driver runs workloads as plain processes. It is safe for concurrent use.
type Driver struct {
	cfg     Config
	hier    cgroup.Hierarchy
	bootID  string
	bootErr error
	// noPidfd makes recovered processes be watched by polling /proc, as on
	// kernels without pidfds; for tests.
	noPidfd bool

	mu    sync.Mutex
	procs map[procKey]*proc // started or recovered, until Wait reports the exit
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver. It detects the node's cgroup hierarchy once, now.
func New(cfg Config) *Driver {
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "atoll"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = cgroup.DefaultRoot
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	d := &Driver{cfg: cfg, hier: cgroup.Detect(cfg.CgroupRoot), procs: make(map[procKey]*proc)}
	d.bootID, d.bootErr = readBootID()
	return d
}

// Name returns "exec".
func (d *Driver) Name() string { return driverName }

// Start launches spec's command in a new session and process group. The
// command is looked up in the workload's PATH; its environment is PATH,
// ATOLL_WORKLOAD and spec.Exec.Env only. stdout and stderr are appended to
// spec.LogPath (discarded when empty) through a descriptor the process owns,
// so nothing of it passes through the agent. ctx bounds only the launch: the
// workload outlives it.
//
// With limits declared and a usable hierarchy, the process runs in the
// cgroup <hierarchy>/<CgroupParent>/<spec.Name>. On cgroup v2 it is created
// inside it; on v1 it is moved in right after it starts.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	if err := d.checkSpec(ctx, spec); err != nil {
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	env := workloadEnv(spec)
	path, err := resolveCommand(spec.Exec.Command[0], envValue(env, "PATH"), spec.Exec.WorkingDir)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	stdin, out, err := openStdio(spec.LogPath)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	defer stdin.Close()
	defer out.Close()

	limits := cgroup.Limits{MemoryBytes: spec.MemoryLimit, MilliCPU: spec.MilliCPU}
	group, err := d.hier.Create(d.cfg.CgroupParent, spec.Name, limits)
	if err != nil {
		_ = group.Remove(0)
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	newCmd := func() *osexec.Cmd {
		return &osexec.Cmd{
			Path:        path,
			Args:        slices.Clone(spec.Exec.Command),
			Env:         env,
			Dir:         spec.Exec.WorkingDir,
			Stdin:       stdin,
			Stdout:      out,
			Stderr:      out,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
	}
	cmd, err := startIn(newCmd, group)
	if err != nil {
		_ = group.Remove(cgroupRemoveWait)
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	st := handleState{
		Name:   spec.Name,
		PID:    cmd.Process.Pid,
		BootID: d.bootID,
		Cgroup: group,
		Limits: limitsText(limits, d.hier),
	}
	h, err := d.track(cmd, &st)
	if err != nil {
		// Undo: the process is our child, so its group is safe to kill.
		_ = unix.Kill(-st.PID, unix.SIGKILL)
		_ = cmd.Wait()
		_ = cleanupCgroup(st, true)
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	return h, nil
}

func (d *Driver) checkSpec(ctx context.Context, spec driver.Spec) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case d.bootErr != nil:
		return d.bootErr
	case spec.Name == "":
		return errors.New("workload has no name")
	case spec.Exec == nil || len(spec.Exec.Command) == 0 || spec.Exec.Command[0] == "":
		return errNoCommand
	case spec.MemoryLimit < 0 || spec.MilliCPU < 0:
		return fmt.Errorf("negative limit: memory %d, cpu %dm", spec.MemoryLimit, spec.MilliCPU)
	}
	return nil
}

// openStdio opens the workload's stdin (/dev/null) and its output: logPath
// for appending, created with its directory if needed, or /dev/null.
func openStdio(logPath string) (stdin, out *os.File, err error) {
	stdin, err = os.Open(os.DevNull)
	if err != nil {
		return nil, nil, fmt.Errorf("open stdin: %w", err)
	}
	if logPath == "" {
		out, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	} else if err = os.MkdirAll(filepath.Dir(logPath), 0o750); err == nil {
		out, err = os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err != nil {
		stdin.Close()
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	return stdin, out, nil
}

// startIn starts a command from newCmd inside group. On cgroup v2 the child
// is created directly in the cgroup (clone3 with CLONE_INTO_CGROUP, Linux
// 5.7+), falling back to moving it right after it starts; on v1 it is always
// moved after it starts.
func startIn(newCmd func() *osexec.Cmd, group cgroup.Group) (*osexec.Cmd, error) {
	if group.Version == cgroup.V2 && len(group.Paths) == 1 {
		if dir, err := os.Open(group.Paths[0]); err == nil {
			cmd := newCmd()
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = int(dir.Fd())
			err = cmd.Start()
			dir.Close()
			if err == nil {
				return cmd, nil
			}
		}
	}
	cmd := newCmd()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := group.Add(cmd.Process.Pid); err != nil {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		_ = cmd.Wait()
		return nil, err
	}
	return cmd, nil
}

// track completes st from /proc, registers the child and starts its reaper.
func (d *Driver) track(cmd *osexec.Cmd, st *handleState) (driver.Handle, error) {
	// The child is not reaped yet, so /proc/<pid> exists even if it exited.
	s, err := readStat(st.PID)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("read start time: %w", err)
	}
	st.StartTicks = s.StartTicks
	h, err := st.handle()
	if err != nil {
		return driver.Handle{}, err
	}
	p := newProc(*st, true)
	d.mu.Lock()
	d.procs[procKey{st.PID, st.StartTicks}] = p
	d.mu.Unlock()
	go p.reap(cmd)
	return h, nil
}

// Recover reattaches to a workload started by an earlier agent (or another
// Driver). It succeeds only if the machine has not rebooted since, and
// /proc/<pid> is alive with the start time stored in the handle, which rules
// out a later process reusing the PID. Otherwise the error wraps
// driver.ErrNotRunning. It never starts anything.
func (d *Driver) Recover(ctx context.Context, h driver.Handle) error {
	st, err := decodeHandle(h)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recover %s: %w", st.Name, err)
	}
	if _, err := d.attach(st); err != nil {
		return fmt.Errorf("recover %s: %w", st.Name, err)
	}
	return nil
}

// verify checks that the handle's process is alive and is the same process.
func (d *Driver) verify(st handleState) error {
	if d.bootErr != nil {
		return d.bootErr
	}
	if st.BootID != d.bootID {
		return fmt.Errorf("started before a reboot (boot id %s, now %s): %w", st.BootID, d.bootID, driver.ErrNotRunning)
	}
	s, err := readStat(st.PID)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("pid %d does not exist: %w", st.PID, driver.ErrNotRunning)
	case err != nil:
		return fmt.Errorf("read pid %d: %w", st.PID, err)
	case s.StartTicks != st.StartTicks:
		return fmt.Errorf("pid %d is another process (started at tick %d, handle says %d): %w",
			st.PID, s.StartTicks, st.StartTicks, driver.ErrNotRunning)
	case s.dead():
		return fmt.Errorf("pid %d has exited: %w", st.PID, driver.ErrNotRunning)
	}
	return nil
}

// attach returns the tracked process for st, or verifies it and starts
// watching it.
func (d *Driver) attach(st handleState) (*proc, error) {
	key := procKey{st.PID, st.StartTicks}
	d.mu.Lock()
	p := d.procs[key]
	d.mu.Unlock()
	if p != nil {
		return p, nil
	}
	if err := d.verify(st); err != nil {
		return nil, err
	}
	var pidfd *os.File
	if !d.noPidfd {
		if f, err := openPidfd(st.PID); err == nil {
			// The pidfd refers to whatever had the PID when it was opened;
			// checking again now proves that was our process.
			if err := d.verify(st); err != nil {
				f.Close()
				return nil, err
			}
			pidfd = f
		}
	}
	p = newProc(st, false)
	d.mu.Lock()
	if existing := d.procs[key]; existing != nil {
		d.mu.Unlock()
		if pidfd != nil {
			pidfd.Close()
		}
		return existing, nil
	}
	d.procs[key] = p
	d.mu.Unlock()
	go p.watch(pidfd, func() <-chan time.Time { return d.cfg.Clock.NewTimer(pollInterval).C() })
	return p, nil
}

// Wait blocks until the workload exits or ctx is done. A process this
// Driver started is reaped and its exit code or signal reported; for a
// recovered one the status is unknown and Code is -1. A handle this Driver
// has neither started nor recovered is recovered first. Once Wait has
// reported an exit the Driver forgets the process.
func (d *Driver) Wait(ctx context.Context, h driver.Handle) (driver.Exit, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Exit{}, fmt.Errorf("wait: %w", err)
	}
	p, err := d.attach(st)
	if err != nil {
		return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, err)
	}
	select {
	case <-p.done:
		d.mu.Lock()
		delete(d.procs, procKey{st.PID, st.StartTicks})
		d.mu.Unlock()
		return p.exit, nil
	case <-ctx.Done():
		return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, ctx.Err())
	}
}

// Stop sends SIGTERM to the workload's process group, SIGKILL after grace
// (at once if grace <= 0), and returns once the main process is gone and
// the rest of its group and cgroup has been killed and the cgroup removed.
// A workload already gone is not an error.
func (d *Driver) Stop(ctx context.Context, h driver.Handle, grace time.Duration) error {
	st, err := decodeHandle(h)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	p, err := d.attach(st)
	if errors.Is(err, driver.ErrNotRunning) {
		// Gone before we came. Its cgroup may now serve a newer instance of
		// the workload, so it is removed only if empty.
		if err := cleanupCgroup(st, false); err != nil {
			return fmt.Errorf("stop %s: %w", st.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", st.Name, err)
	}
	if grace > 0 {
		err := p.signalGroup(unix.SIGTERM)
		if err != nil && !errors.Is(err, errGone) {
			return fmt.Errorf("stop %s: %w", st.Name, err)
		}
		if err == nil {
			t := d.cfg.Clock.NewTimer(grace)
			select {
			case <-p.done:
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("stop %s: %w", st.Name, ctx.Err())
			}
			t.Stop()
		}
	}
	if err := p.signalGroup(unix.SIGKILL); err != nil && !errors.Is(err, errGone) {
		return fmt.Errorf("stop %s: %w", st.Name, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", st.Name, ctx.Err())
	}
	if p.cleanupErr != nil {
		return fmt.Errorf("stop %s: process gone, but: %w", st.Name, p.cleanupErr)
	}
	return nil
}

// Inspect describes a running workload; for one that is gone the error
// wraps driver.ErrNotRunning.
func (d *Driver) Inspect(ctx context.Context, h driver.Handle) (driver.Info, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return driver.Info{}, fmt.Errorf("inspect %s: %w", st.Name, err)
	}
	if err := d.verify(st); err != nil {
		return driver.Info{}, fmt.Errorf("inspect %s: %w", st.Name, err)
	}
	started, err := startedAt(st.StartTicks)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect %s: %w", st.Name, err)
	}
	return driver.Info{PID: st.PID, StartedAt: started, Limits: st.Limits}, nil
}
