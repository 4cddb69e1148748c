package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/manifest"
)

// Bounds on waits, so that the bench always ends by itself.
const (
	startTimeout = 30 * time.Second // agent start, workloads running
	stopTimeout  = 15 * time.Second // agent SIGTERM → exit, before SIGKILL
	callTimeout  = 5 * time.Second  // one local API call
)

// harness owns everything the bench creates: a temporary directory with the
// atoll binary and the agents' data directories, the agent processes, and
// (through them) the workload processes. Its cleanup removes all of it.
type harness struct {
	root   string // module root, where `go build` runs
	tmp    string
	bin    string
	runID  string // marks this run's workloads (ATOLL_BENCH) and names
	node   string // agent --name; the cgroup parent is atoll-<node>
	log    io.Writer
	agents []*agent
	nData  int
}

// newHarness makes the temporary directory and becomes a child subreaper,
// so that workloads orphaned by a killed agent are re-parented to the bench,
// which reaps them.
func newHarness(root string, log io.Writer) (*harness, error) {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("run id: %w", err)
	}
	runID := hex.EncodeToString(id[:])
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	tmp, err := os.MkdirTemp("", "atoll-bench-")
	if err != nil {
		return nil, err
	}
	return &harness{root: root, tmp: tmp, bin: filepath.Join(tmp, "atoll"), runID: runID,
		node: "bench-" + runID, log: log}, nil
}

// name returns a workload name unique to this run, so that a /proc scan for
// ATOLL_WORKLOAD=<name> can only find this run's processes.
func (h *harness) name(base string) string { return "b" + h.runID + "-" + base }

// marker is the environment entry every workload of this run carries.
func (h *harness) marker() string { return "ATOLL_BENCH=" + h.runID }

// build compiles the stripped atoll binary.
func (h *harness) build(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", h.bin, "./cmd/atoll")
	cmd.Dir = h.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/atoll: %w\n%s", err, out.String())
	}
	return nil
}

// dataDir returns a fresh, not yet existing data directory.
func (h *harness) dataDir(what string) string {
	h.nData++
	return filepath.Join(h.tmp, fmt.Sprintf("%02d-%s", h.nData, what))
}

// agent is one atoll process: an `atoll agent`, or (started by startHub,
// with no local client) an `atoll hub`.
type agent struct {
	cmd     *exec.Cmd
	data    string
	logPath string
	client  *client.Local
	done    chan struct{} // closed once the process has exited and been reaped
	err     error         // cmd.Wait's result, valid after done
}

// startAgent starts an agent on data, named h.node, with extra flags
// (--hub, --labels). The agent is in its own process group (a Ctrl-C
// reaches only the bench, which then stops it) and is killed if the bench
// dies.
func (h *harness) startAgent(data string, extra ...string) (*agent, error) {
	a, err := h.spawn(data, "agent", append([]string{"agent", "--data", data, "--name", h.node}, extra...))
	if err != nil {
		return nil, err
	}
	a.client = client.NewLocal(localapi.SocketPath(data))
	return a, nil
}

// spawn starts `atoll args...` with its output in data.logs/<what>-N.log,
// and remembers it for teardown.
func (h *harness) spawn(data, what string, args []string) (*agent, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(data+".logs", fmt.Sprintf("%s-%d.log", what, len(h.agents)))
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(h.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	a := &agent{cmd: cmd, data: data, logPath: logPath, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	h.agents = append(h.agents, a)
	return a, nil
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

func (a *agent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the agent to exit, killing it after
// stopTimeout. Its exec workloads keep running, as after any agent exit.
func (a *agent) stop() error {
	if a.exited() {
		return nil
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop agent %d: %w", a.pid(), err)
	}
	select {
	case <-a.done:
		if a.err != nil {
			return fmt.Errorf("agent %d exited badly after SIGTERM: %w%s", a.pid(), a.err, a.logTail())
		}
		return nil
	case <-time.After(stopTimeout):
	}
	a.kill()
	return fmt.Errorf("agent %d did not exit within %v of SIGTERM; killed%s", a.pid(), stopTimeout, a.logTail())
}

// kill sends SIGKILL and waits for the agent to be gone.
func (a *agent) kill() {
	if !a.exited() {
		_ = a.cmd.Process.Kill()
	}
	<-a.done
}

// logTail returns the end of the agent's log, for error messages.
func (a *agent) logTail() string {
	data, err := os.ReadFile(a.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\nagent log (" + a.logPath + ", end):\n" + string(data)
}

// apply sends ws to the agent.
func (a *agent) apply(ctx context.Context, ws []manifest.Workload) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := a.client.Apply(cctx, ws); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// status asks the agent for its workloads' status.
func (a *agent) status(ctx context.Context) ([]supervisor.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return a.client.Status(cctx)
}

// waitStatus polls the status every interval until ok accepts it, failing
// after timeout or when the agent exits. Errors of the calls themselves (no
// socket yet) count as "not yet".
func (a *agent) waitStatus(ctx context.Context, interval, timeout time.Duration, what string,
	ok func([]supervisor.Status) bool) ([]supervisor.Status, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := a.status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		last := err
		if err == nil {
			last = errors.New(summarize(st))
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case a.exited():
			return nil, fmt.Errorf("%s: agent exited (%v)%s", what, a.err, a.logTail())
		case time.Now().After(deadline):
			return nil, fmt.Errorf("%s: not within %v; last: %v%s", what, timeout, last, a.logTail())
		}
		time.Sleep(interval)
	}
}

// summarize counts workloads by state and quotes one reason.
func summarize(st []supervisor.Status) string {
	counts := map[supervisor.State]int{}
	reason := ""
	for _, s := range st {
		counts[s.State]++
		if s.State != supervisor.StateRunning && reason == "" && s.Reason != "" {
			reason = s.Name + ": " + s.Reason
		}
	}
	parts := []string{fmt.Sprintf("%d workloads", len(st))}
	for _, s := range []supervisor.State{supervisor.StateRunning, supervisor.StateStarting, supervisor.StatePending,
		supervisor.StateBackoff, supervisor.StateBlocked, supervisor.StateStopped, supervisor.StateFailed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if reason != "" {
		parts = append(parts, reason)
	}
	return strings.Join(parts, ", ")
}

// running returns the running workloads among names by name, if all of them
// run; exclude lists PIDs that do not count (instances that were killed).
func running(st []supervisor.Status, names []string, exclude map[int]bool) (map[string]supervisor.Status, bool) {
	byName := make(map[string]supervisor.Status, len(st))
	for _, s := range st {
		byName[s.Name] = s
	}
	for _, n := range names {
		s, ok := byName[n]
		if !ok || s.State != supervisor.StateRunning || exclude[s.PID] {
			return nil, false
		}
	}
	return byName, true
}

// teardown ends a phase: it stops every agent still running, kills every
// process left with this run's marker and reaps the orphans.
func (h *harness) teardown() error {
	var errs []error
	for _, a := range h.agents {
		if err := a.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	h.agents = nil
	if err := h.killMarked(); err != nil {
		errs = append(errs, err)
	}
	h.reapOrphans()
	return errors.Join(errs...)
}

// killMarked SIGKILLs the process group of every process carrying this run's
// marker (the workloads of our agents; each leads its own group).
func (h *harness) killMarked() error {
	all, err := pids()
	if err != nil {
		return err
	}
	var victims []int
	for _, p := range all {
		if hasEnv(p, h.marker()) {
			victims = append(victims, p)
			_ = unix.Kill(-p, unix.SIGKILL)
			_ = unix.Kill(p, unix.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range victims {
		for !gone(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("workload process %d survived SIGKILL", p)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// reapOrphans reaps exited children of the bench: workloads re-parented to
// it when their agent died. Call it only when no agent process is running,
// so that no agent is reaped behind exec.Cmd's back.
func (h *harness) reapOrphans() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return // ECHILD: no children left
		case pid == 0:
			time.Sleep(5 * time.Millisecond) // a child still running (dying)
		}
	}
}

// cleanup undoes everything the bench made: processes, cgroups (none are
// expected: the bench declares no limits on exec workloads) and the
// temporary directory.
func (h *harness) cleanup() error {
	errs := []error{h.teardown()}
	errs = append(errs, h.removeCgroups())
	if err := os.RemoveAll(h.tmp); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", h.tmp, err))
	}
	return errors.Join(errs...)
}

// removeCgroups removes the agent's cgroup parent atoll-<node> (and any
// workload cgroups in it) from every hierarchy, if the agent made one.
func (h *harness) removeCgroups() error {
	mounts, _ := filepath.Glob("/sys/fs/cgroup/*")
	var errs []error
	for _, m := range append(mounts, "/sys/fs/cgroup") {
		parent := filepath.Join(m, "atoll-"+h.node)
		if _, err := os.Stat(parent); err != nil {
			continue
		}
		subs, _ := os.ReadDir(parent)
		for _, s := range subs {
			if s.IsDir() {
				if err := unix.Rmdir(filepath.Join(parent, s.Name())); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", filepath.Join(parent, s.Name()), err))
				}
			}
		}
		if err := unix.Rmdir(parent); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", parent, err))
		}
	}
	return errors.Join(errs...)
}

// execWorkloads returns n `sleep 100000` workloads named names, restart
// policy always; zeroBackoff sets backoff.initial to 0s. They go through
// manifest.Decode, as `atoll node apply` sends them.
func (h *harness) execWorkloads(names []string, zeroBackoff bool) ([]manifest.Workload, error) {
	docs := make([]string, 0, len(names))
	for _, n := range names {
		doc := fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: exec
  exec:
    command: [sleep, "100000"]
    env: {ATOLL_BENCH: %q}
  restart:
    policy: always
`, n, h.runID)
		if zeroBackoff {
			doc += "    backoff: {initial: 0s}\n"
		}
		docs = append(docs, doc)
	}
	return manifest.Decode("bench.yaml", []byte(strings.Join(docs, "---\n")))
}

// names returns n workload names base-00, base-01, ...
func (h *harness) names(base string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = h.name(fmt.Sprintf("%s-%02d", base, i))
	}
	return out
}
