package node_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
)

// TestNode_AgentSIGKILL_AdoptsWorkloads (invariant 3): exec workloads
// outlive an agent killed with SIGKILL, and the next agent adopts them: same
// processes, no restart, no duplicate.
func TestNode_AgentSIGKILL_AdoptsWorkloads(t *testing.T) {
	n := newNode(t)
	first := n.start()
	names := []string{"shell", "task", "tail"}
	n.apply(n.manifest(
		wl{name: "shell", command: sh("echo shell-up; exec sleep 300")},
		testTask(t, "task", "sleep"),
		wl{name: "tail", command: []string{"tail", "-f", "/dev/null"}},
	), "workload/shell created\nworkload/task created\nworkload/tail created\n")
	before := n.waitRunning(names...)
	for _, name := range names {
		pid := before[name].PID
		s, err := proc.ReadStat(pid)
		if err != nil || s.PPID != first.pid() || s.PGID != pid {
			t.Fatalf("%s pid %d: %+v, %v; want a child of the agent (%d) leading its own group", name, pid, s, err, first.pid())
		}
	}
	// The log shows the process started once; it must stay so.
	atolltest.WaitFor(t, waitTimeout, func() error {
		if l := n.logLines("shell"); len(l) != 1 || l[0] != "shell-up" {
			return fmt.Errorf("shell log = %q", l)
		}
		return nil
	})

	n.kill9(first)
	for _, name := range names {
		pid := before[name].PID
		s, err := proc.ReadStat(pid)
		if err != nil || !proc.Alive(pid) {
			t.Fatalf("%s (pid %d) died with the agent: %v", name, pid, err)
		}
		if s.PPID == first.pid() {
			t.Errorf("%s (pid %d) still has the dead agent as parent", name, pid)
		}
	}

	second := n.spawn()
	var adoptedAfter time.Duration
	atolltest.WaitFor(t, readyTimeout, func() error {
		if second.exited() {
			t.Fatalf("second agent exited: %v\n%s", second.waitErr, second.output())
		}
		m, err := n.statuses()
		if err != nil {
			return err
		}
		for _, name := range names {
			s := m[name]
			if s.PID != 0 && s.PID != before[name].PID {
				t.Fatalf("%s = %+v; the new agent started a second process instead of adopting pid %d", name, s, before[name].PID)
			}
			if s.State != supervisor.StateRunning || s.PID != before[name].PID {
				return fmt.Errorf("%s = %+v; want running as pid %d", name, s, before[name].PID)
			}
		}
		adoptedAfter = time.Since(second.started)
		return nil
	})
	t.Logf("MEASURED: new agent process start -> all %d exec workloads adopted and running: %v",
		len(names), adoptedAfter.Round(time.Millisecond))

	after := n.waitRunning(names...)
	evs := n.events()
	for _, name := range names {
		if after[name].Restarts != before[name].Restarts {
			t.Errorf("%s restarts %d -> %d; adoption is no restart", name, before[name].Restarts, after[name].Restarts)
		}
		if !n.isWorkload(after[name].PID, name) {
			t.Errorf("%s pid %d is not a live process of the workload", name, after[name].PID)
		}
		if s, _ := proc.ReadStat(after[name].PID); s.PPID == second.pid() {
			t.Errorf("%s pid %d is a child of the new agent: it was started, not adopted", name, after[name].PID)
		}
		for typ, want := range map[string]int{"started": 1, "adopted": 1, "not-recovered": 0, "exited": 0} {
			if got := countEvents(evs, name, typ); got != want {
				t.Errorf("%s has %d %q events; want %d (events %+v)", name, got, typ, want, evs)
			}
		}
		if pids := n.ownPIDs(name); len(pids) != 1 {
			t.Errorf("%s has %d processes %v; want exactly 1", name, len(pids), pids)
		}
	}
	if l := n.logLines("shell"); len(l) != 1 {
		t.Errorf("shell log = %q; want the one line of its only start", l)
	}
}

// TestNode_Reboot_RestoresFromStoreWithoutNetwork (invariant 2): after a
// "reboot" (agent and every workload killed), an agent with no network at
// all brings every workload back from its local store alone.
func TestNode_Reboot_RestoresFromStoreWithoutNetwork(t *testing.T) {
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace with `unshare --net`: %v %s", err, out)
	}
	n := newNode(t)
	first := n.start()
	names := []string{"sensor", "shell", "task"}
	n.apply(n.manifest(
		wl{name: "sensor", module: sensorModule(), env: map[string]string{"SENSOR": "e2e", "INTERVAL": "50ms"}},
		wl{name: "shell", command: sh("echo shell-up; exec sleep 300")},
		testTask(t, "task", "sleep"),
	), "workload/sensor created\nworkload/shell created\nworkload/task created\n")
	before := n.waitRunning(names...)
	waitReadings(t, n, "sensor", 2)

	// The reboot: the agent and every workload die.
	n.kill9(first)
	if err := n.killWorkloads(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shell", "task"} {
		if proc.Alive(before[name].PID) {
			t.Fatalf("%s pid %d survived the reboot", name, before[name].PID)
		}
	}
	sensorLines := len(n.readings("sensor"))

	second := n.start("unshare", "--net")
	// Prove the agent has no network: its own namespace, only a loopback
	// (which unshare leaves down).
	ourNS, _ := os.Readlink("/proc/self/ns/net")
	agentNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", second.pid()))
	if err != nil || agentNS == ourNS {
		t.Fatalf("agent network namespace %q (%v); want a new one, not ours (%q)", agentNS, err, ourNS)
	}
	if ifs := netInterfaces(t, second.pid()); len(ifs) != 1 || ifs[0] != "lo" {
		t.Fatalf("agent sees interfaces %q; want only lo", ifs)
	}

	after := n.waitRunning(names...)
	for _, name := range []string{"shell", "task"} {
		pid := after[name].PID
		if pid == before[name].PID || !n.isWorkload(pid, name) {
			t.Errorf("%s = %+v; want a new live process (old pid %d)", name, after[name], before[name].PID)
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns != agentNS {
			t.Errorf("%s runs in network namespace %q; want the agent's %q", name, ns, agentNS)
		}
	}
	evs := n.events()
	for _, name := range names {
		if c := countEvents(evs, name, "not-recovered"); c != 1 {
			t.Errorf("%s has %d not-recovered events; want 1", name, c)
		}
		if c := countEvents(evs, name, "started"); c != 2 {
			t.Errorf("%s has %d started events; want 2", name, c)
		}
		if c := len(n.ownPIDs(name)); name != "sensor" && c != 1 {
			t.Errorf("%s has %d processes; want 1", name, c)
		}
	}
	waitReadings(t, n, "sensor", sensorLines+2)
	if l := n.logLines("shell"); len(l) != 2 || l[0] != "shell-up" || l[1] != "shell-up" {
		t.Errorf("shell log = %q; want one line per start", l)
	}
}

// netInterfaces lists the network interfaces pid sees.
func netInterfaces(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		t.Fatal(err)
	}
	var ifs []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			ifs = append(ifs, strings.TrimSpace(name))
		}
	}
	return ifs
}

// readings returns the sensor readings in a WASM sensor workload's log (the
// module also writes start and exit lines to stderr, which share the log).
func (n *node) readings(name string) []string {
	var out []string
	for _, l := range n.logLines(name) {
		if strings.Contains(l, " seq=") {
			out = append(out, l)
		}
	}
	return out
}

// waitReadings waits until a sensor's log has at least want readings.
func waitReadings(t *testing.T, n *node, name string, want int) []string {
	t.Helper()
	var lines []string
	atolltest.WaitFor(t, waitTimeout, func() error {
		if lines = n.readings(name); len(lines) < want {
			return fmt.Errorf("%s log has %d readings; want >= %d", name, len(lines), want)
		}
		return nil
	})
	return lines
}

// TestNode_CorruptStore_RecoversLastGoodState damages state.db while the
// agent is down and checks that the next agent restores the last good
// snapshot, says so, keeps the damaged file and brings the workloads back.
func TestNode_CorruptStore_RecoversLastGoodState(t *testing.T) {
	damages := []struct {
		name   string
		damage func(path string) error
	}{
		{"garbage", func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			junk := bytes.Repeat([]byte("not a bbolt page! "), int(fi.Size())/18+1)[:fi.Size()]
			return os.WriteFile(path, junk, 0o600)
		}},
		{"truncated", func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			return os.Truncate(path, fi.Size()/2)
		}},
		{"empty", func(path string) error { return os.Truncate(path, 0) }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			n := newNode(t)
			first := n.start()
			names := []string{"alpha", "beta"}
			n.apply(n.manifest(
				wl{name: "alpha", command: []string{"sleep", "300"}},
				wl{name: "beta", command: sh("echo beta-up; exec sleep 300")},
			), "workload/alpha created\nworkload/beta created\n")
			before := n.waitRunning(names...)

			n.term(first)
			if err := n.killWorkloads(); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(n.dir, "state.db")
			if err := d.damage(db); err != nil {
				t.Fatal(err)
			}
			damaged, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}

			second := n.start()
			after := n.waitRunning(names...)
			for _, name := range names {
				if after[name].PID == before[name].PID || !n.isWorkload(after[name].PID, name) {
					t.Errorf("%s = %+v; want a new live process", name, after[name])
				}
			}
			info, err := n.client.Node(apiCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info.StoreRecovery, "restored the last good state") {
				t.Errorf("node info storeRecovery = %q; want it to say the last good state was restored", info.StoreRecovery)
			}
			r := n.mustCLI("node", "info", "-o", "json")
			if !strings.Contains(r.stdout, `"storeRecovery": "state.db was corrupt`) {
				t.Errorf("node info -o json lacks storeRecovery: %s", r.stdout)
			}
			r = n.mustCLI("node", "events", "-o", "json")
			if !strings.Contains(r.stdout, `"type": "store-recovered"`) {
				t.Errorf("node events -o json lacks store-recovered: %s", r.stdout)
			}
			kept, _ := filepath.Glob(filepath.Join(n.dir, "state.db.corrupt-*"))
			if len(kept) != 1 {
				t.Fatalf("corrupt files kept: %q; want one state.db.corrupt-*", kept)
			}
			if b, err := os.ReadFile(kept[0]); err != nil || !bytes.Equal(b, damaged) {
				t.Errorf("%s does not hold the damaged file (%v)", kept[0], err)
			}
			// No crash loop: the agent is still up and answering.
			if second.exited() {
				t.Fatalf("agent exited after recovery: %v", second.waitErr)
			}
			if st := n.statusJSON(); len(st) != 2 {
				t.Errorf("status after recovery: %+v", st)
			}
		})
	}
}

// TestNode_CorruptStore_AdoptsSurvivingWorkloads: when state.db is lost
// while its workloads still run, the restored snapshot must not make the
// agent start second copies of them.
func TestNode_CorruptStore_AdoptsSurvivingWorkloads(t *testing.T) {
	n := newNode(t)
	first := n.start()
	n.apply(n.manifest(wl{name: "alpha", command: []string{"sleep", "300"}}), "workload/alpha created\n")
	pid := n.waitRunning("alpha")["alpha"].PID
	n.term(first)
	if err := os.Truncate(filepath.Join(n.dir, "state.db"), 0); err != nil {
		t.Fatal(err)
	}
	n.start()
	if s := n.waitRunning("alpha")["alpha"]; s.PID != pid {
		t.Errorf("alpha = %+v; want the surviving pid %d adopted", s, pid)
	}
	if pids := n.ownPIDs("alpha"); len(pids) != 1 {
		t.Errorf("alpha has %d processes %v; want 1", len(pids), pids)
	}
}

// TestNode_RestartPolicyNever_SurvivesAgentRestart: a workload that ran to
// its end under restart policy never must not run again because the agent
// restarted.
func TestNode_RestartPolicyNever_SurvivesAgentRestart(t *testing.T) {
	n := newNode(t)
	first := n.start()
	n.apply(n.manifest(wl{name: "once", command: sh("echo ran"), policy: "never"}), "workload/once created\n")
	n.waitFor([]string{"once"}, "stopped", func(s supervisor.Status) bool { return s.State == supervisor.StateStopped })
	n.kill9(first)
	n.start()
	n.waitFor([]string{"once"}, "stopped", func(s supervisor.Status) bool { return s.State == supervisor.StateStopped })
	if c := countEvents(n.events(), "once", "started"); c != 1 {
		t.Errorf("once started %d times; want 1", c)
	}
	if l := n.logLines("once"); len(l) != 1 {
		t.Errorf("log = %q; want one run", l)
	}
}
