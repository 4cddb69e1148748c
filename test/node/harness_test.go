package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
)

// tokenVar is put in the environment of every exec workload a test applies,
// with a value unique to the test, so that cleanup finds (and kills) exactly
// the processes this test caused, including restarted and duplicated ones,
// and nothing of the other tests or engineers on the machine.
const tokenVar = "ATOLL_E2E_TOKEN"

// Deadlines; generous because they only bound failures. A race-built agent
// compiles WASM modules several times slower, so TestMain triples them.
var (
	readyTimeout = 20 * time.Second // agent start until its socket answers
	waitTimeout  = 15 * time.Second // a workload reaching a state
	cliTimeout   = 30 * time.Second // one CLI command
)

// node is one agent data directory and the agents started on it.
type node struct {
	t      *testing.T
	dir    string // the agent's --data
	aux    string // agent stderr files and manifests, outside dir
	name   string // --name; the cgroup parent is atoll-<name>
	token  string
	flags  []string // extra agent flags
	client *client.Local

	mu     sync.Mutex
	agents []*agentProc
	files  int
}

// newNode prepares a data directory and registers the cleanup of everything
// the test will start on it. Nothing runs until start.
func newNode(t *testing.T, flags ...string) *node {
	t.Helper()
	n := &node{
		t:     t,
		dir:   t.TempDir(),
		aux:   t.TempDir(),
		name:  "e2e-" + randHex(4),
		token: randHex(8),
		flags: flags,
	}
	n.client = client.NewLocal(localapi.SocketPath(n.dir))
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(n.cleanup)
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// agentProc is one `atoll agent` process.
type agentProc struct {
	cmd     *exec.Cmd
	stderr  string // file with its stdout and stderr
	started time.Time
	done    chan struct{} // closed once it has exited and been reaped
	waitErr error
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func (a *agentProc) output() string {
	b, _ := os.ReadFile(a.stderr)
	return string(b)
}

// cliEnv is the environment of every atoll process the tests run: the
// test's own, with the CLI's config file pointed at nothing so that a
// developer's ~/.config/atoll cannot change what the tests see.
func (n *node) cliEnv() []string {
	env := []string{"ATOLL_CONFIG=" + filepath.Join(n.aux, "no-such-config.yaml")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ATOLL_") {
			env = append(env, kv)
		}
	}
	return env
}

// start starts an agent on the node's directory and waits until its local
// API answers. prefix, if given, wraps the command (["unshare", "--net"]).
func (n *node) start(prefix ...string) *agentProc {
	n.t.Helper()
	a := n.spawn(prefix...)
	n.waitReady(a)
	return a
}

// spawn starts an agent in its own process group without waiting for it.
func (n *node) spawn(prefix ...string) *agentProc {
	n.t.Helper()
	n.mu.Lock()
	i := len(n.agents)
	n.mu.Unlock()
	args := append(append([]string(nil), prefix...), agentBin, "agent", "--data", n.dir, "--name", n.name,
		"--pressure-threshold", "off")
	args = append(args, n.flags...)
	logPath := filepath.Join(n.aux, fmt.Sprintf("agent-%d.log", i))
	logf, err := os.Create(logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = n.cliEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own group, so cleanup can kill it (and only it) by group; and
	// killed with the test binary should that die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	a := &agentProc{cmd: cmd, stderr: logPath, done: make(chan struct{})}
	a.started = time.Now()
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start agent: %v", err)
	}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	n.mu.Lock()
	n.agents = append(n.agents, a)
	n.mu.Unlock()
	return a
}

// waitReady waits until the agent's socket answers; an agent that exits
// instead fails the test with its output.
func (n *node) waitReady(a *agentProc) {
	n.t.Helper()
	atolltest.WaitFor(n.t, readyTimeout, func() error {
		if a.exited() {
			n.t.Fatalf("agent exited before answering (%v):\n%s", a.waitErr, a.output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := n.client.Node(ctx)
		return err
	})
}

// kill9 sends SIGKILL to the agent's process group and waits until it is
// reaped.
func (n *node) kill9(a *agentProc) {
	n.t.Helper()
	if a.exited() {
		n.t.Fatalf("agent %d exited before it was killed (%v):\n%s", a.pid(), a.waitErr, a.output())
	}
	if err := syscall.Kill(-a.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		n.t.Fatalf("kill agent: %v", err)
	}
	n.waitExit(a)
}

// term sends SIGTERM to the agent and waits for a clean exit.
func (n *node) term(a *agentProc) {
	n.t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("SIGTERM agent: %v", err)
	}
	n.waitExit(a)
	if a.waitErr != nil {
		n.t.Fatalf("agent stopped by SIGTERM exited with %v:\n%s", a.waitErr, a.output())
	}
}

func (n *node) waitExit(a *agentProc) {
	n.t.Helper()
	select {
	case <-a.done:
	case <-time.After(readyTimeout):
		n.t.Fatalf("agent %d did not exit within %v", a.pid(), readyTimeout)
	}
}

// result is what one CLI command did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// cli runs the atoll binary; `node` verbs get --data for this node.
func (n *node) cli(args ...string) result {
	n.t.Helper()
	if len(args) > 0 && args[0] == "node" {
		args = append([]string{"node", "--data", n.dir}, args[1:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, atollBin, args...)
	cmd.Env = n.cliEnv()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		n.t.Fatalf("atoll %q: %v (%s)", args, err, r)
	}
	return r
}

// mustCLI runs a command that must succeed.
func (n *node) mustCLI(args ...string) result {
	n.t.Helper()
	r := n.cli(args...)
	if r.code != 0 {
		n.t.Fatalf("atoll %q: %s", args, r)
	}
	return r
}

// apply runs `node apply -f file` and checks its exact output.
func (n *node) apply(file, wantOut string) {
	n.t.Helper()
	r := n.cli("node", "apply", "-f", file)
	if r.code != 0 || r.stdout != wantOut {
		n.t.Fatalf("node apply -f %s: %s; want exit 0 and %q", file, r, wantOut)
	}
}

// apiCtx is a short deadline for one local API call.
func apiCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// statuses returns the node's workloads by name.
func (n *node) statuses() (map[string]supervisor.Status, error) {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.client.Status(c)
	if err != nil {
		return nil, err
	}
	m := make(map[string]supervisor.Status, len(st))
	for _, s := range st {
		m[s.Name] = s
	}
	return m, nil
}

// waitFor polls the status until cond accepts every named workload, and
// returns those statuses.
func (n *node) waitFor(names []string, what string, cond func(supervisor.Status) bool) map[string]supervisor.Status {
	n.t.Helper()
	var got map[string]supervisor.Status
	atolltest.WaitFor(n.t, waitTimeout, func() error {
		m, err := n.statuses()
		if err != nil {
			return err
		}
		for _, name := range names {
			s, ok := m[name]
			if !ok {
				return fmt.Errorf("workload %s not listed: %+v", name, m)
			}
			if !cond(s) {
				return fmt.Errorf("workload %s is not %s: %+v", name, what, s)
			}
		}
		got = m
		return nil
	})
	return got
}

// waitRunning waits until every named workload runs (exec: with a pid).
func (n *node) waitRunning(names ...string) map[string]supervisor.Status {
	n.t.Helper()
	return n.waitFor(names, "running", func(s supervisor.Status) bool {
		return s.State == supervisor.StateRunning && (s.Runtime != "exec" || s.PID > 0)
	})
}

// events returns every event the node has recorded.
func (n *node) events() []store.Event {
	n.t.Helper()
	evs, err := n.client.Events(apiCtx(n.t), 0)
	if err != nil {
		n.t.Fatalf("events: %v", err)
	}
	return evs
}

// countEvents counts events of typ for workload.
func countEvents(evs []store.Event, workload, typ string) int {
	c := 0
	for _, e := range evs {
		if e.Workload == workload && e.Type == typ {
			c++
		}
	}
	return c
}

// statusJSON runs `node status -o json` and decodes it.
func (n *node) statusJSON() []supervisor.Status {
	n.t.Helper()
	r := n.mustCLI("node", "status", "-o", "json")
	var st []supervisor.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		n.t.Fatalf("node status -o json: %v in %q", err, r.stdout)
	}
	return st
}

// ---- workloads and manifests ----

// wl is one workload the test declares.
type wl struct {
	name     string
	command  []string          // exec runtime
	module   string            // wasm runtime: the module's path
	env      map[string]string // exec and wasm
	priority int
	memory   string
	policy   string // restart policy
	backoff  string // restart backoff initial
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// testTask runs the test binary as a workload doing task (testtask.Env).
func testTask(t *testing.T, name, task string) wl {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return wl{name: name, command: []string{exe}, env: map[string]string{"ATOLL_TESTTASK": task}}
}

func sensorModule() string { return filepath.Join(repoRoot, "examples", "wasm", "sensor.wasm") }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// yaml renders ws as a multi-document manifest. Exec workloads get the
// test's token in their environment.
func (n *node) yaml(ws ...wl) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "---\napiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n", w.name)
		env := map[string]string{}
		for k, v := range w.env {
			env[k] = v
		}
		if w.module != "" {
			fmt.Fprintf(&b, "  runtime: wasm\n  wasm:\n    module: %s\n", jsonText(w.module))
		} else {
			env[tokenVar] = n.token
			fmt.Fprintf(&b, "  runtime: exec\n  exec:\n    command: %s\n", jsonText(w.command))
		}
		if len(env) > 0 {
			fmt.Fprintf(&b, "    env: %s\n", jsonText(env))
		}
		if w.priority != 0 {
			fmt.Fprintf(&b, "  priority: %d\n", w.priority)
		}
		if w.memory != "" {
			fmt.Fprintf(&b, "  resources:\n    memory: %s\n", w.memory)
		}
		if w.policy != "" || w.backoff != "" {
			b.WriteString("  restart:\n")
			if w.policy != "" {
				fmt.Fprintf(&b, "    policy: %s\n", w.policy)
			}
			if w.backoff != "" {
				fmt.Fprintf(&b, "    backoff: {initial: %s, max: %s}\n", w.backoff, w.backoff)
			}
		}
	}
	return b.String()
}

// manifest writes ws to a new file and returns its path.
func (n *node) manifest(ws ...wl) string {
	n.t.Helper()
	return n.writeFile(n.yaml(ws...))
}

func (n *node) writeFile(content string) string {
	n.t.Helper()
	n.mu.Lock()
	n.files++
	p := filepath.Join(n.aux, fmt.Sprintf("manifest-%d.yaml", n.files))
	n.mu.Unlock()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// ---- processes ----

func hasVar(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// ownPIDs lists the live processes carrying this test's token; with a
// workload name, only those with ATOLL_WORKLOAD=name.
func (n *node) ownPIDs(workload string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		n.t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env := proc.Environ(pid)
		if !hasVar(env, tokenVar+"="+n.token) || !proc.Alive(pid) {
			continue
		}
		if workload == "" || hasVar(env, "ATOLL_WORKLOAD="+workload) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isWorkload reports whether pid is a live process of this test's workload.
func (n *node) isWorkload(pid int, workload string) bool {
	env := proc.Environ(pid)
	return proc.Alive(pid) && hasVar(env, tokenVar+"="+n.token) && hasVar(env, "ATOLL_WORKLOAD="+workload)
}

// killWorkloads kills the process group of every process carrying the
// test's token and waits until none is left. It reports what it could not
// kill instead of failing, so cleanup can go on.
func (n *node) killWorkloads() error {
	deadline := time.Now().Add(waitTimeout)
	for {
		pids := n.ownPIDs("")
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			// A workload leads its own session and group; kill the group
			// only when its leader is ours.
			if s, err := proc.ReadStat(pid); err == nil && s.PGID == pid {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workload processes %v survive SIGKILL", pids)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// cgroupDirs are the directories the agent may create for this node: the
// cgroup v1 memory and cpu hierarchies and the v2 unified one.
func (n *node) cgroupDirs() []string {
	var dirs []string
	for _, h := range []string{"memory", "cpu", ""} {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", h, "atoll-"+n.name))
	}
	return dirs
}

// cleanup kills every agent and workload the test started, removes the
// node's cgroups and, on failure, prints the agents' output.
func (n *node) cleanup() {
	t := n.t
	n.mu.Lock()
	agents := append([]*agentProc(nil), n.agents...)
	n.mu.Unlock()
	for _, a := range agents {
		if !a.exited() { // once reaped, its pid (and group id) may be reused
			_ = syscall.Kill(-a.pid(), syscall.SIGKILL)
		}
		select {
		case <-a.done:
		case <-time.After(readyTimeout):
			t.Errorf("cleanup: agent %d did not die", a.pid())
		}
	}
	if err := n.killWorkloads(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, parent := range n.cgroupDirs() {
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			// The kernel frees a cgroup of killed tasks asynchronously.
			dir := filepath.Join(parent, e.Name())
			deadline := time.Now().Add(5 * time.Second)
			for os.Remove(dir) != nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling with a deadline
			}
		}
		_ = os.Remove(parent)
	}
	for i, a := range agents {
		out := a.output()
		if raceEnabled && strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("agent %d had a data race", i)
		}
		if t.Failed() {
			t.Logf("agent %d (pid %d, %v) output:\n%s", i, a.pid(), a.waitErr, out)
		}
	}
}

// logLines returns the lines of a workload's log file.
func (n *node) logLines(workload string) []string {
	b, err := os.ReadFile(filepath.Join(n.dir, "logs", workload+".log"))
	if err != nil {
		return nil
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// tableRows parses a CLI table into one map per row, keyed by header.
func tableRows(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		t.Fatalf("empty table")
	}
	header := lines[0]
	cols := strings.Fields(header)
	starts := make([]int, len(cols))
	for i, c := range cols {
		starts[i] = strings.Index(header, c)
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, c := range cols {
			end := len(line)
			if i+1 < len(cols) {
				end = min(starts[i+1], len(line))
			}
			if starts[i] < end {
				row[c] = strings.TrimSpace(line[starts[i]:end])
			}
		}
		rows = append(rows, row)
	}
	return rows
}
