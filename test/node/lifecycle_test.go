package node_test

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/manifest"
)

// TestNode_ApplyStatusLogs walks one exec workload through apply, status,
// logs, an unchanged and a changed re-apply, and delete.
func TestNode_ApplyStatusLogs(t *testing.T) {
	n := newNode(t)
	n.start()

	v1 := n.manifest(wl{name: "echo", command: sh("echo hello-from-v1; exec sleep 300")})
	n.apply(v1, "workload/echo created\n")
	n.waitRunning("echo")

	st := n.statusJSON()
	if len(st) != 1 || st[0].Name != "echo" || st[0].Runtime != "exec" || st[0].State != supervisor.StateRunning || st[0].PID <= 0 {
		t.Fatalf("node status -o json = %+v; want echo running with a pid", st)
	}
	pid1 := st[0].PID
	if !n.isWorkload(pid1, "echo") {
		t.Fatalf("pid %d from status is not a live process of workload echo", pid1)
	}
	waitLastLogLine(t, n, "echo", "hello-from-v1")

	// The same manifest again changes nothing.
	n.apply(v1, "workload/echo unchanged\n")
	if st := n.statusJSON(); len(st) != 1 || st[0].PID != pid1 || st[0].State != supervisor.StateRunning {
		t.Fatalf("after unchanged apply: %+v; want echo still running as pid %d", st, pid1)
	}
	if !n.isWorkload(pid1, "echo") {
		t.Fatalf("unchanged apply ended pid %d", pid1)
	}

	// A changed spec replaces the process.
	v2 := n.manifest(wl{name: "echo", command: sh("echo hello-from-v2; exec sleep 300")})
	n.apply(v2, "workload/echo configured\n")
	pid2 := n.waitFor([]string{"echo"}, "running with a new pid", func(s supervisor.Status) bool {
		return s.State == supervisor.StateRunning && s.PID > 0 && s.PID != pid1
	})["echo"].PID
	if proc.Alive(pid1) {
		t.Errorf("old pid %d still alive after reconfigure", pid1)
	}
	if !n.isWorkload(pid2, "echo") {
		t.Fatalf("new pid %d is not a live process of workload echo", pid2)
	}
	waitLastLogLine(t, n, "echo", "hello-from-v2")

	r := n.mustCLI("node", "delete", "echo")
	if r.stdout != "workload/echo deleted\n" {
		t.Errorf("node delete: %s", r)
	}
	// Delete returns once the workload is gone.
	if proc.Alive(pid2) {
		t.Errorf("pid %d still alive after node delete returned", pid2)
	}
	if pids := n.ownPIDs(""); len(pids) != 0 {
		t.Errorf("workload processes left after delete: %v", pids)
	}
	if r := n.mustCLI("node", "status", "-o", "json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("node status -o json after delete = %q; want []", r.stdout)
	}
}

// waitLastLogLine waits until `node logs NAME --tail 1` prints want.
func waitLastLogLine(t *testing.T, n *node, name, want string) {
	t.Helper()
	atolltest.WaitFor(t, waitTimeout, func() error {
		r := n.cli("node", "logs", name, "--tail", "1")
		if r.code != 0 || r.stdout != want+"\n" {
			return errors.New("node logs --tail 1: " + r.String())
		}
		return nil
	})
}

// TestNode_CrashedWorkloadRestarts checks that a workload that keeps failing
// is restarted with backoff, and that status says so.
func TestNode_CrashedWorkloadRestarts(t *testing.T) {
	n := newNode(t)
	n.start()
	n.apply(n.manifest(wl{name: "crasher", command: sh("echo crash-run; sleep 0.2; exit 1"),
		policy: "always", backoff: "300ms"}), "workload/crasher created\n")

	reason := regexp.MustCompile(`^exited with code 1; restart (\d+) in 300ms$`)
	var (
		lastRestarts int
		backoffSeen  []int // the N of every "restart N in" seen in backoff
		pids         = map[int]bool{}
	)
	atolltest.WaitFor(t, waitTimeout, func() error {
		m, err := n.statuses()
		if err != nil {
			return err
		}
		s := m["crasher"]
		if s.Restarts < lastRestarts {
			t.Fatalf("restarts went down from %d to %d", lastRestarts, s.Restarts)
		}
		lastRestarts = s.Restarts
		switch s.State {
		case supervisor.StateRunning:
			pids[s.PID] = true
		case supervisor.StateBackoff:
			mm := reason.FindStringSubmatch(s.Reason)
			if mm == nil {
				t.Fatalf("backoff reason %q does not match %s", s.Reason, reason)
			}
			if k, _ := strconv.Atoi(mm[1]); k != s.Restarts {
				t.Fatalf("backoff says restart %s but restarts = %d", mm[1], s.Restarts)
			}
			if !slices.Contains(backoffSeen, s.Restarts) {
				backoffSeen = append(backoffSeen, s.Restarts)
			}
		}
		if len(backoffSeen) < 2 || len(pids) < 2 || s.Restarts < 3 {
			return fmt.Errorf("not yet: %+v; backoffs seen %v, pids seen %v", s, backoffSeen, pids)
		}
		return nil
	})
	if st := n.statusJSON(); len(st) != 1 || st[0].Restarts < 3 {
		t.Errorf("node status -o json = %+v; want restarts >= 3", st)
	}
	evs := n.events()
	if c := countEvents(evs, "crasher", "backoff"); c < 3 {
		t.Errorf("%d backoff events; want >= 3: %+v", c, evs)
	}
	if c := countEvents(evs, "crasher", "started"); c < 3 {
		t.Errorf("%d started events; want >= 3", c)
	}
	runs := 0
	for _, l := range n.logLines("crasher") {
		if l == "crash-run" {
			runs++
		}
	}
	if runs < 3 {
		t.Errorf("log has %d runs; want >= 3", runs)
	}
}

// TestNode_BadInputNeverCorrupts checks that invalid manifests are refused
// with their field paths, by the CLI and by the agent itself, and change
// nothing, neither running processes nor the store.
func TestNode_BadInputNeverCorrupts(t *testing.T) {
	n := newNode(t)
	a := n.start()
	good := []wl{
		{name: "alpha", command: []string{"sleep", "300"}},
		{name: "beta", command: sh("echo beta-up; exec sleep 300")},
	}
	n.apply(n.manifest(good...), "workload/alpha created\nworkload/beta created\n")
	before := n.waitRunning("alpha", "beta")
	nEvents := len(n.events())

	bad := `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: Bad_Name
spec:
  runtime: exec
  exec:
    command: []
  resources:
    memory: lots
`
	badFile := n.writeFile(bad)
	wantPaths := []string{"metadata.name", "spec.exec.command", "spec.resources.memory"}

	r := n.cli("node", "apply", "-f", badFile)
	if r.code != 1 || r.stdout != "" {
		t.Errorf("node apply of an invalid file: %s; want exit 1, no output", r)
	}
	for _, p := range wantPaths {
		if !strings.Contains(r.stderr, badFile+"#1: "+p+": ") {
			t.Errorf("node apply stderr lacks %q: %q", badFile+"#1: "+p, r.stderr)
		}
	}

	// A good new workload, a change to alpha and a bad document in one file:
	// nothing of it is applied.
	mixed := n.yaml(wl{name: "newcomer", command: []string{"sleep", "300"}},
		wl{name: "alpha", command: []string{"sleep", "301"}}) + "---\n" + bad
	mixedFile := n.writeFile(mixed)
	if r := n.cli("node", "apply", "-f", mixedFile); r.code != 1 || !strings.Contains(r.stderr, mixedFile+"#3: spec.exec.command: ") {
		t.Errorf("node apply of a partly invalid file: %s; want exit 1 naming %s#3: spec.exec.command", r, mixedFile)
	}

	// The agent validates too, for clients that skip the CLI.
	_, err := n.client.Apply(apiCtx(t), []manifest.Workload{{
		APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: "alpha"},
		Spec:     manifest.WorkloadSpec{Runtime: manifest.RuntimeExec, Exec: &manifest.ExecSpec{}},
	}})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest ||
		!slices.ContainsFunc(apiErr.Fields, func(f localapi.FieldError) bool { return f.Path == "spec.exec.command" }) {
		t.Errorf("direct apply of an invalid workload: %v; want 400 with field spec.exec.command", err)
	}

	if r := n.cli("node", "delete", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "workload not found") {
		t.Errorf("node delete nosuch: %s; want exit 1, workload not found", r)
	}

	r = n.cli("validate", "-f", badFile)
	if r.code != 1 {
		t.Errorf("validate: %s; want exit 1", r)
	}
	errLines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(errLines) != len(wantPaths) {
		t.Errorf("validate printed %d errors; want %d: %q", len(errLines), len(wantPaths), r.stderr)
	}
	for _, p := range wantPaths {
		if !slices.ContainsFunc(errLines, func(l string) bool { return strings.HasPrefix(l, "error: "+badFile+"#1: "+p+": ") }) {
			t.Errorf("validate lacks an error for %s: %q", p, r.stderr)
		}
	}
	if r := n.cli("validate", "-f", n.manifest(good...)); r.code != 0 || r.stdout != "2 workloads valid\n" {
		t.Errorf("validate of a good file: %s", r)
	}

	checkUnchanged := func(when string) {
		t.Helper()
		after, err := n.statuses()
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != 2 {
			t.Errorf("%s: workloads = %+v; want only alpha and beta", when, after)
		}
		for _, name := range []string{"alpha", "beta"} {
			if after[name].PID != before[name].PID || after[name].State != supervisor.StateRunning || !n.isWorkload(after[name].PID, name) {
				t.Errorf("%s: %s = %+v; want running as pid %d", when, name, after[name], before[name].PID)
			}
		}
	}
	checkUnchanged("after bad input")
	for _, e := range n.events()[nEvents:] {
		t.Errorf("bad input caused event %+v", e)
	}

	// What is on disk is the same: a new agent adopts exactly alpha and beta.
	n.kill9(a)
	n.start()
	n.waitRunning("alpha", "beta")
	checkUnchanged("after agent restart")
}

// TestNode_SecondAgentOnSameDirRefused checks that a second agent on a data
// directory in use exits with a clear error and leaves the first alone.
func TestNode_SecondAgentOnSameDirRefused(t *testing.T) {
	n := newNode(t)
	first := n.start()
	n.apply(n.manifest(wl{name: "alpha", command: []string{"sleep", "300"}}), "workload/alpha created\n")
	pid := n.waitRunning("alpha")["alpha"].PID

	began := time.Now()
	r := n.cli("agent", "--data", n.dir, "--name", n.name, "--pressure-threshold", "off")
	took := time.Since(began)
	if r.code == 0 || !strings.Contains(r.stderr, "locked") || !strings.Contains(r.stderr, "another agent") {
		t.Errorf("second agent: %s; want a non-zero exit saying the store is locked by another agent", r)
	}
	t.Logf("second agent refused after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))

	if first.exited() {
		t.Fatalf("first agent exited: %v", first.waitErr)
	}
	if s := n.waitRunning("alpha")["alpha"]; s.PID != pid || !n.isWorkload(pid, "alpha") {
		t.Errorf("alpha = %+v; want still running as pid %d", s, pid)
	}
	if c := len(n.ownPIDs("alpha")); c != 1 {
		t.Errorf("%d alpha processes; want 1", c)
	}
	// The first agent still takes changes.
	n.apply(n.manifest(wl{name: "beta", command: []string{"sleep", "300"}}), "workload/beta created\n")
	n.waitRunning("alpha", "beta")
}
