package fleet_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	procfs "atoll.dev/atoll/internal/atolltest/proc"
	"atoll.dev/atoll/internal/hub"
	"go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/linkproxy"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

// tokenVar is put in the environment of every workload a test applies,
// with a value unique to the test, so that /proc shows exactly the
// processes this test caused (on any of its nodes) and cleanup kills them
// and nothing of the other tests or engineers on the machine.
const tokenVar = "ATOLL_E2E_TOKEN"

// Timing. Deadlines are generous because they only bound failures; TestMain
// triples them for a race-built agent.
var (
	readyTimeout = 20 * time.Second // a process start until its API answers
	waitTimeout  = 20 * time.Second // the fleet reaching a state
	cliTimeout   = 30 * time.Second // one CLI command
)

const (
	// heartbeat is every agent's --heartbeat: fast, so that convergence and
	// liveness take a fraction of a second rather than 10 s.
	heartbeat = 200 * time.Millisecond
	// nodeTimeout is the hub's --node-timeout: ten missed heartbeats.
	nodeTimeout = 2 * time.Second
	// pollEvery bounds how often a wait asks the hub or the agents: each
	// of the hub's list answers opens JetStream watchers, and this machine
	// has two cores shared by the hub, the agents and the test.
	pollEvery = 50 * time.Millisecond
)

// fleet is one test's hub, its nodes, and everything they started.
type fleet struct {
	t      *testing.T
	begin  time.Time
	aux    string // process logs and manifests
	token  string
	prefix string // of node names, unique to the test

	hubDir   string
	httpAddr string
	natsAddr string
	hubURL   string
	hubFlags []string    // more flags for `atoll hub`
	hub      *client.Hub // with the admin's credentials, once the hub wrote them
	admin    *tls.Config // those credentials (the hub's NATS lets an admin look into streams)
	enroll   string      // an enrollment token for the fleet's agents
	hubProc  *proc       // the current hub process; nil while none runs

	mu    sync.Mutex
	procs []*proc // every hub and agent process started
	nodes []*node
	files int
}

// newFleet prepares a hub on free loopback ports, with --node-timeout
// nodeTimeout, and registers the cleanup of everything the test will start.
// Nothing runs until startHub.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{
		t:      t,
		begin:  time.Now(),
		aux:    t.TempDir(),
		hubDir: t.TempDir(),
		token:  randHex(8),
		prefix: "f" + randHex(3),
	}
	f.httpAddr = fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t))
	f.natsAddr = fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t))
	f.hubURL = "https://" + f.httpAddr
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(f.cleanup)
	return f
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logf adds a line to the test's timeline, stamped with the time since the
// fleet was made.
func (f *fleet) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("[%6.2fs] %s", time.Since(f.begin).Seconds(), fmt.Sprintf(format, args...))
}

// since is a duration for the timeline.
func since(t0 time.Time) string { return time.Since(t0).Round(time.Millisecond).String() }

// ---- processes ----

// proc is one hub or agent process, in its own process group.
type proc struct {
	what    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once it has exited and been reaped
	waitErr error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// env is the environment of every atoll process the tests run: the test's
// own without ATOLL_* variables, and the CLI config pointed at nothing, so
// a developer's ~/.config/atoll cannot change what the tests see.
func (f *fleet) env() []string {
	// The hub's admin credentials (written at its first start).
	env := []string{"ATOLL_CONFIG=" + filepath.Join(f.hubDir, hub.AdminConfigFile)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ATOLL_") {
			env = append(env, kv)
		}
	}
	return env
}

// spawn starts bin in its own process group, its output in a file.
func (f *fleet) spawn(what, bin string, args ...string) *proc {
	f.t.Helper()
	f.mu.Lock()
	i := len(f.procs)
	f.mu.Unlock()
	logPath := filepath.Join(f.aux, fmt.Sprintf("proc-%d-%s.log", i, strings.ReplaceAll(what, " ", "-")))
	logf, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = f.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own group, so cleanup kills it (and only it) by group; and killed
	// with the test binary should that die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{what: what, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start %s: %v", what, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	return p
}

// kill9 sends SIGKILL to p's process group and waits until p is reaped.
func (f *fleet) kill9(p *proc) {
	f.t.Helper()
	if p.exited() {
		f.t.Fatalf("%s (pid %d) exited before it was killed (%v):\n%s", p.what, p.pid(), p.waitErr, p.output())
	}
	if err := syscall.Kill(-p.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		f.t.Fatalf("kill %s: %v", p.what, err)
	}
	select {
	case <-p.done:
	case <-time.After(readyTimeout):
		f.t.Fatalf("%s (pid %d) did not exit within %v of SIGKILL", p.what, p.pid(), readyTimeout)
	}
}

// ---- hub ----

// startHub starts `atoll hub` on the fleet's data directory and ports and
// waits until its API answers.
func (f *fleet) startHub() {
	f.t.Helper()
	args := append([]string{"hub", "--data", f.hubDir, "--listen", f.httpAddr, "--nats-listen", f.natsAddr,
		"--node-timeout", nodeTimeout.String()}, f.hubFlags...)
	p := f.spawn("hub", atollBin, args...)
	f.hubProc = p
	atolltest.WaitFor(f.t, readyTimeout, func() error {
		if p.exited() {
			f.t.Fatalf("hub exited before answering (%v):\n%s", p.waitErr, p.output())
		}
		if f.hub == nil {
			if err := f.loadAdmin(); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.hub.Nodes(ctx)
		return err
	})
}

// loadAdmin makes the fleet's hub client with the admin's credentials
// the hub wrote in its data directory.
func (f *fleet) loadAdmin() error {
	b, err := os.ReadFile(filepath.Join(f.hubDir, hub.AdminConfigFile))
	if err != nil {
		return err
	}
	var creds client.Credentials
	if err := yaml.Unmarshal(b, &creds); err != nil {
		return err
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		return err
	}
	f.hub, f.admin = client.NewHub(f.hubURL, tlsCfg), tlsCfg
	return nil
}

// enrollToken is an enrollment token for the fleet's agents, made once.
func (f *fleet) enrollToken() string {
	f.t.Helper()
	if f.enroll == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t, err := f.hub.CreateToken(ctx, api.TokenRequest{TTL: "24h", Uses: 1000})
		if err != nil {
			f.t.Fatalf("enrollment token: %v", err)
		}
		f.enroll = t.Token
	}
	return f.enroll
}

// killHub SIGKILLs the hub.
func (f *fleet) killHub() {
	f.t.Helper()
	f.kill9(f.hubProc)
	f.hubProc = nil
}

// hubNodes returns the hub's nodes by name.
func (f *fleet) hubNodes() (map[string]api.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ns, err := f.hub.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]api.Node, len(ns))
	for _, n := range ns {
		m[n.Name] = n
	}
	return m, nil
}

// hubNode returns one node with its instances and overrides.
func (f *fleet) hubNode(name string) (api.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.hub.Node(ctx, name)
}

// hubEvents returns the hub's events about node, oldest first.
func (f *fleet) hubEvents(node string) ([]wire.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.hub.Events(ctx, api.EventQuery{Node: node, Limit: 1000})
}

// waitFor polls cond, at most every pollEvery, until it returns nil; it
// fails the test with cond's last error after timeout (waitTimeout if 0).
func (f *fleet) waitFor(timeout time.Duration, cond func() error) {
	f.t.Helper()
	if timeout == 0 {
		timeout = waitTimeout
	}
	var (
		next time.Time
		last = errors.New("not checked yet")
	)
	atolltest.WaitFor(f.t, timeout, func() error {
		if now := time.Now(); now.After(next) {
			next = now.Add(pollEvery)
			last = cond()
		}
		return last
	})
}

// waitSynced waits until the hub shows every node connected, heard from
// after after, with its plan applied (appliedRevision == planRevision) and
// its last status the same as the agent's own (workloads, states, pids and
// restarts), and returns the nodes as the hub listed them.
func (f *fleet) waitSynced(after time.Time, nodes ...*node) map[string]api.Node {
	f.t.Helper()
	var got map[string]api.Node
	f.waitFor(0, func() error {
		m, err := f.hubNodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			hn, ok := m[n.name]
			switch {
			case !ok:
				return fmt.Errorf("hub does not list node %s", n.name)
			case hn.State != api.NodeConnected:
				return fmt.Errorf("node %s is %s", n.name, hn.State)
			case !hn.LastSeen.After(after):
				return fmt.Errorf("node %s last seen %v, not after %v", n.name, hn.LastSeen, after)
			case hn.AppliedRevision != hn.PlanRevision || hn.StoredRevision != hn.PlanRevision:
				return fmt.Errorf("node %s: plan %d, stored %d, applied %d", n.name, hn.PlanRevision, hn.StoredRevision, hn.AppliedRevision)
			}
			local, err := n.statuses()
			if err != nil {
				return err
			}
			detail, err := f.hubNode(n.name)
			if err != nil {
				return err
			}
			if err := sameRun(n.name, local, statusMap(detail.Instances)); err != nil {
				return fmt.Errorf("hub's status differs from the agent's: %w", err)
			}
		}
		got = m
		return nil
	})
	return got
}

// ---- nodes ----

// node is one agent's data directory, its link proxy and the agents
// started on it.
type node struct {
	f      *fleet
	name   string
	dir    string
	labels string   // --labels
	flags  []string // more agent flags
	proxy  *linkproxy.Proxy
	local  *client.Local
	agent  *proc // the current agent; nil while none runs
}

// addNode prepares a node named prefix-suffix whose link to the hub goes
// through a new proxy, starts its agent (with flags added) and waits until
// the hub has it.
func (f *fleet) addNode(suffix, labels string, flags ...string) *node {
	f.t.Helper()
	n := &node{f: f, name: f.prefix + "-" + suffix, dir: f.t.TempDir(), labels: labels, flags: flags}
	p, err := linkproxy.Start(f.natsAddr)
	if err != nil {
		f.t.Fatal(err)
	}
	n.proxy = p
	n.local = client.NewLocal(localapi.SocketPath(n.dir))
	f.mu.Lock()
	f.nodes = append(f.nodes, n)
	f.mu.Unlock()
	n.start()
	// Until its Hello is in, the hub does not know the node's labels, and
	// a selector applied now would match nothing yet.
	f.waitFor(0, func() error {
		m, err := f.hubNodes()
		if err != nil {
			return err
		}
		if st := m[n.name].State; st != api.NodeConnected {
			return fmt.Errorf("hub shows new node %s %q", n.name, st)
		}
		return nil
	})
	return n
}

// start starts an agent on the node and waits until its local API answers.
func (n *node) start() {
	n.f.t.Helper()
	args := []string{"agent", "--data", n.dir, "--name", n.name, "--hub", "nats://" + n.proxy.Addr(),
		"--token", n.f.enrollToken(), "--heartbeat", heartbeat.String(), "--pressure-threshold", "off"}
	if n.labels != "" {
		args = append(args, "--labels", n.labels)
	}
	args = append(args, n.flags...)
	p := n.f.spawn("agent "+n.name, agentBin, args...)
	n.agent = p
	atolltest.WaitFor(n.f.t, readyTimeout, func() error {
		if p.exited() {
			n.f.t.Fatalf("agent %s exited before answering (%v):\n%s", n.name, p.waitErr, p.output())
		}
		_, err := n.info()
		return err
	})
}

// kill9 SIGKILLs the node's agent; its workloads keep running.
func (n *node) kill9() {
	n.f.t.Helper()
	n.f.kill9(n.agent)
	n.agent = nil
}

// info is the agent's `node info`.
func (n *node) info() (localapi.NodeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.local.Node(ctx)
}

// statuses returns the node's workloads by name, as the agent reports them.
func (n *node) statuses() (map[string]wire.WorkloadStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := n.local.Status(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]wire.WorkloadStatus, len(st))
	for _, s := range st {
		m[s.Name] = s
	}
	return m, nil
}

// events returns the node's stored events, oldest first.
func (n *node) events() []wire.Event {
	n.f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := n.local.Events(ctx, 0)
	if err != nil {
		n.f.t.Fatalf("events of %s: %v", n.name, err)
	}
	return evs
}

func running(s wire.WorkloadStatus) bool { return s.State == wire.StateRunning && s.PID > 0 }

// waitRunning waits until the node runs exactly the named workloads (and
// nothing else), each with a pid, and returns their statuses.
func (n *node) waitRunning(names ...string) map[string]wire.WorkloadStatus {
	n.f.t.Helper()
	var got map[string]wire.WorkloadStatus
	n.f.waitFor(0, func() error {
		m, err := n.statuses()
		if err != nil {
			return err
		}
		if have := sortedKeys(m); !slices.Equal(have, sorted(names)) {
			return fmt.Errorf("node %s has workloads %v; want %v", n.name, have, sorted(names))
		}
		for _, name := range names {
			if !running(m[name]) {
				return fmt.Errorf("node %s: %s is not running: %+v", n.name, name, m[name])
			}
		}
		got = m
		return nil
	})
	return got
}

// ---- CLI ----

// result is what one CLI command did.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v, stdout %q, stderr %q", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// run runs the atoll CLI as given.
func (f *fleet) run(args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, atollBin, args...)
	cmd.Env = f.env()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(t0)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		f.t.Fatalf("atoll %q: %v (%s)", args, err, r)
	}
	return r
}

// cli runs a fleet verb against the hub.
func (f *fleet) cli(args ...string) result {
	f.t.Helper()
	return f.run(append(args, "--hub", f.hubURL)...)
}

// mustCLI runs a fleet verb that must succeed.
func (f *fleet) mustCLI(args ...string) result {
	f.t.Helper()
	r := f.cli(args...)
	if r.code != 0 {
		f.t.Fatalf("atoll %q: %s", args, r)
	}
	return r
}

// mustCLI runs a node verb against this node's agent; it must succeed.
func (n *node) mustCLI(args ...string) result {
	n.f.t.Helper()
	r := n.f.run(append([]string{"node", "--data", n.dir}, args...)...)
	if r.code != 0 {
		n.f.t.Fatalf("atoll node %q on %s: %s", args, n.name, r)
	}
	return r
}

// decode parses a command's JSON output into v.
func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, r.stdout, err)
	}
	return v
}

// getWorkloads runs `atoll get workloads -o json`, by name.
func (f *fleet) getWorkloads() map[string]api.Workload {
	f.t.Helper()
	m := map[string]api.Workload{}
	for _, w := range decode[[]api.Workload](f.t, f.mustCLI("get", "workloads", "-o", "json")) {
		m[w.Name] = w
	}
	return m
}

// getNodes runs `atoll get nodes -o json`, by name.
func (f *fleet) getNodes() map[string]api.Node {
	f.t.Helper()
	m := map[string]api.Node{}
	for _, n := range decode[[]api.Node](f.t, f.mustCLI("get", "nodes", "-o", "json")) {
		m[n.Name] = n
	}
	return m
}

// statusJSON runs `atoll node status -o json` on n, by name.
func (n *node) statusJSON() map[string]wire.WorkloadStatus {
	n.f.t.Helper()
	m := map[string]wire.WorkloadStatus{}
	for _, s := range decode[[]wire.WorkloadStatus](n.f.t, n.mustCLI("status", "-o", "json")) {
		m[s.Name] = s
	}
	return m
}

// ---- manifests ----

// wl is one workload the test declares to the hub.
type wl struct {
	name     string
	script   string // sh -c; default: print a line, then sleep
	env      map[string]string
	nodes    []string          // spec.placement.nodes
	selector map[string]string // spec.placement.nodeSelector
	forward  []string          // spec.forward
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// manifest writes ws as a multi-document manifest to a new file and
// returns its path. Every workload gets the test's token in its
// environment.
func (f *fleet) manifest(ws ...wl) string {
	f.t.Helper()
	var b strings.Builder
	for _, w := range ws {
		script := w.script
		if script == "" {
			script = "echo " + w.name + " up; exec sleep 3600"
		}
		env := map[string]string{tokenVar: f.token}
		for k, v := range w.env {
			env[k] = v
		}
		fmt.Fprintf(&b, "---\napiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n", w.name)
		fmt.Fprintf(&b, "  runtime: exec\n  exec:\n    command: %s\n    env: %s\n", jsonText([]string{"sh", "-c", script}), jsonText(env))
		if len(w.forward) > 0 {
			fmt.Fprintf(&b, "  forward: %s\n", jsonText(w.forward))
		}
		if len(w.nodes) > 0 || len(w.selector) > 0 {
			b.WriteString("  placement:\n")
			if len(w.nodes) > 0 {
				fmt.Fprintf(&b, "    nodes: %s\n", jsonText(w.nodes))
			}
			if len(w.selector) > 0 {
				fmt.Fprintf(&b, "    nodeSelector: %s\n", jsonText(w.selector))
			}
		}
	}
	f.mu.Lock()
	f.files++
	p := filepath.Join(f.aux, fmt.Sprintf("manifest-%d.yaml", f.files))
	f.mu.Unlock()
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// apply runs `atoll apply -f` with ws and checks that it printed want, one
// line per workload ("workload/NAME created (N nodes)").
func (f *fleet) apply(ws []wl, want ...string) {
	f.t.Helper()
	r := f.cli("apply", "-f", f.manifest(ws...))
	if r.code != 0 || r.stdout != strings.Join(want, "\n")+"\n" {
		f.t.Fatalf("atoll apply: %s; want exit 0 and %q", r, want)
	}
}

// ---- processes on the machine ----

// wproc is a live workload process of this test.
type wproc struct {
	pid      int
	workload string
	node     string // whose agent started it (by its log file); "" if unknown
}

// workloadProcs lists the live processes carrying this test's token. A workload's
// stdout is its log file in its agent's data directory, which tells the
// node.
func (f *fleet) workloadProcs() []wproc {
	f.t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	nodes := slices.Clone(f.nodes)
	f.mu.Unlock()
	var out []wproc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env := procfs.Environ(pid)
		if tok, _ := procfs.EnvValue(env, tokenVar); tok != f.token || !procfs.Alive(pid) {
			continue
		}
		p := wproc{pid: pid}
		p.workload, _ = procfs.EnvValue(env, "ATOLL_WORKLOAD")
		if out1, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid)); err == nil {
			for _, n := range nodes {
				if strings.HasPrefix(out1, n.dir+string(filepath.Separator)) {
					p.node = n.name
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// placement maps each workload to the nodes its live processes run on,
// and each of those to the pids.
func (f *fleet) placement() map[string]map[string][]int {
	f.t.Helper()
	m := map[string]map[string][]int{}
	for _, p := range f.workloadProcs() {
		if m[p.workload] == nil {
			m[p.workload] = map[string][]int{}
		}
		m[p.workload][p.node] = append(m[p.workload][p.node], p.pid)
	}
	return m
}

// procEnv returns the value of key in pid's environment, checking that pid
// is a live process of workload.
func (f *fleet) procEnv(pid int, workload, key string) (string, error) {
	env := procfs.Environ(pid)
	if w, _ := procfs.EnvValue(env, "ATOLL_WORKLOAD"); w != workload || !procfs.Alive(pid) {
		return "", fmt.Errorf("pid %d is not a live process of workload %s", pid, workload)
	}
	v, _ := procfs.EnvValue(env, key)
	return v, nil
}

// killWorkloads kills the process group of every process carrying the
// test's token and waits until none is left.
func (f *fleet) killWorkloads(filter func(wproc) bool) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		var left []int
		for _, p := range f.workloadProcs() {
			if filter != nil && !filter(p) {
				continue
			}
			left = append(left, p.pid)
			// A workload leads its own session and group; kill the group
			// only when its leader is ours.
			if s, err := procfs.ReadStat(p.pid); err == nil && s.PGID == p.pid {
				_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workload processes %v survive SIGKILL", left)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// cleanup kills every process the test started, closes the proxies,
// removes the nodes' cgroups and, on failure, prints the processes' output.
func (f *fleet) cleanup() {
	t := f.t
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	nodes := slices.Clone(f.nodes)
	f.mu.Unlock()
	for _, p := range procs {
		if !p.exited() { // once reaped, its pid (and group id) may be reused
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		}
		select {
		case <-p.done:
		case <-time.After(readyTimeout):
			t.Errorf("cleanup: %s (pid %d) did not die", p.what, p.pid())
		}
	}
	for _, n := range nodes {
		_ = n.proxy.Close()
	}
	if err := f.killWorkloads(nil); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, n := range nodes {
		for _, h := range []string{"memory", "cpu", ""} {
			parent := filepath.Join("/sys/fs/cgroup", h, "atoll-"+n.name)
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
			if err := os.Remove(parent); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	for _, p := range procs {
		out := p.output()
		if raceEnabled && strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("%s had a data race", p.what)
		}
		if t.Failed() {
			t.Logf("%s (pid %d, %v) output:\n%s", p.what, p.pid(), p.waitErr, out)
		}
	}
}

// ---- small things ----

// snapshot is what a node runs: workload → status.
type snapshot map[string]wire.WorkloadStatus

// sameRun reports how now differs from before in what a node runs: the
// set of workloads, their states, pids and restart counts.
func sameRun(node string, before, now snapshot) error {
	if !slices.Equal(sortedKeys(before), sortedKeys(now)) {
		return fmt.Errorf("node %s: workloads %v became %v", node, sortedKeys(before), sortedKeys(now))
	}
	for name, b := range before {
		s := now[name]
		if s.State != b.State || s.PID != b.PID || s.Restarts != b.Restarts {
			return fmt.Errorf("node %s: %s was %s pid %d restarts %d, is %s pid %d restarts %d",
				node, name, b.State, b.PID, b.Restarts, s.State, s.PID, s.Restarts)
		}
	}
	return nil
}

// statusMap indexes statuses by workload.
func statusMap(sts []wire.WorkloadStatus) snapshot {
	m := snapshot{}
	for _, s := range sts {
		m[s.Name] = s
	}
	return m
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// countEvents counts the events of typ about workload ("" for any).
func countEvents(evs []wire.Event, workload, typ string) int {
	c := 0
	for _, e := range evs {
		if (workload == "" || e.Workload == workload) && e.Type == typ {
			c++
		}
	}
	return c
}

// eventsAfter returns the events with a sequence number above seq.
func eventsAfter(evs []wire.Event, seq uint64) []wire.Event {
	var out []wire.Event
	for _, e := range evs {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out
}

func lastSeq(evs []wire.Event) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func briefEvents(evs []wire.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %d %s %s %s: %s", e.Seq, e.Node, e.Workload, e.Type, e.Message)
	}
	return b.String()
}
