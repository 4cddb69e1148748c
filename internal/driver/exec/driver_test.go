package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/driver"
)

func TestDriver_Name(t *testing.T) {
	if got := New(Config{}).Name(); got != "exec" {
		t.Errorf("Name() = %q, want exec", got)
	}
}

func TestDriver_Start_Wait_ExitCode(t *testing.T) {
	d := newDriver(t)
	h, _ := start(t, d, newSpec(t, "three", "sh", "-c", "exit 3"))
	if h.Driver != "exec" || h.Version != 1 {
		t.Errorf("handle = %s v%d, want exec v1", h.Driver, h.Version)
	}
	exit := wait(t, d, h)
	if exit.Code != 3 || exit.Signal != "" || exit.Err != nil || !exit.Failed() {
		t.Errorf("exit = %+v, want code 3", exit)
	}
}

func TestDriver_Start_Wait_Signal(t *testing.T) {
	d := newDriver(t)
	h, _ := start(t, d, newSpec(t, "killed", "sh", "-c", "kill -KILL $$"))
	exit := wait(t, d, h)
	if exit.Code != -1 || exit.Signal != "SIGKILL" {
		t.Errorf("exit = %+v, want SIGKILL", exit)
	}
}

func TestDriver_Start_LogAppended(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "logger", "sh", "-c", "echo to-stdout; echo to-stderr >&2; read x || echo stdin-empty; sleep 1000")
	// Earlier content of the log must survive: the file is appended to.
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec.LogPath, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, st := start(t, d, spec)
	got := readLog(t, spec.LogPath, "stdin-empty")
	if !strings.HasPrefix(got, "earlier\n") || !strings.Contains(got, "to-stdout\n") || !strings.Contains(got, "to-stderr\n") {
		t.Errorf("log = %q, want earlier content then both streams", got)
	}
	// The workload holds the log file itself; nothing is piped via the agent.
	for _, fd := range []string{"1", "2"} {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.PID, fd))
		if err != nil || target != spec.LogPath {
			t.Errorf("fd %s -> %q (%v), want %s", fd, target, err, spec.LogPath)
		}
	}
	if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", st.PID)); target != os.DevNull {
		t.Errorf("stdin -> %q, want /dev/null", target)
	}
}

func TestDriver_Start_LogCreated(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "fresh", "sh", "-c", "echo hello")
	// Neither the log nor its directory exists yet.
	if _, err := os.Stat(filepath.Dir(spec.LogPath)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log dir exists before start: %v", err)
	}
	h, _ := start(t, d, spec)
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("exit = %+v", exit)
	}
	if got := readLog(t, spec.LogPath, "hello"); got != "hello\n" {
		t.Errorf("log = %q", got)
	}
	fi, err := os.Stat(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("log mode = %v, want at most 0640", perm)
	}
}

func TestDriver_Start_OwnSessionAndGroup(t *testing.T) {
	d := newDriver(t)
	_, st := start(t, d, newSpec(t, "leader", "sleep", "1000"))
	s, err := readStat(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	if s.PGID != st.PID || s.SID != st.PID {
		t.Errorf("pgid %d, sid %d; want both %d", s.PGID, s.SID, st.PID)
	}
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.SID == self.SID || s.PGID == self.PGID {
		t.Errorf("workload shares the test's session %d or group %d", self.SID, self.PGID)
	}
}

func TestDriver_Start_Environment(t *testing.T) {
	t.Setenv("ATOLL_TEST_AGENT_SECRET", "must-not-leak")
	t.Setenv("PATH", "/usr/bin:/bin")
	d := newDriver(t)
	spec := newSpec(t, "envy", "sh", "-c", "env; echo END")
	spec.Exec.Env = map[string]string{"GREETING": "hello world", "ATOLL_WORKLOAD": "spoofed"}
	start(t, d, spec)
	got := readLog(t, spec.LogPath, "END")
	for _, want := range []string{"PATH=/usr/bin:/bin\n", "ATOLL_WORKLOAD=envy\n", "GREETING=hello world\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("env lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "ATOLL_TEST_AGENT_SECRET") || strings.Contains(got, "spoofed") {
		t.Errorf("agent variable leaked or ATOLL_WORKLOAD overridden:\n%s", got)
	}
	// Only what the driver passes, plus what sh itself adds.
	allowed := []string{"PATH", "ATOLL_WORKLOAD", "GREETING", "PWD", "SHLVL", "_", "OLDPWD"}
	for line := range strings.Lines(strings.TrimSuffix(got, "END\n")) {
		if key, _, _ := strings.Cut(line, "="); !slices.Contains(allowed, key) {
			t.Errorf("unexpected variable %q", strings.TrimSpace(line))
		}
	}
}

func TestDriver_Start_DefaultPath(t *testing.T) {
	t.Setenv("PATH", "")
	env := workloadEnv(driver.Spec{Name: "x", Exec: &driver.ExecConfig{}})
	if got := envValue(env, "PATH"); got != defaultPath {
		t.Errorf("PATH = %q, want %q", got, defaultPath)
	}
}

func TestDriver_Start_WorkingDir(t *testing.T) {
	d := newDriver(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho ran in $(pwd)\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, "wd", "./run.sh")
	spec.Exec.WorkingDir = dir
	h, _ := start(t, d, spec)
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("exit = %+v", exit)
	}
	readLog(t, spec.LogPath, "ran in "+dir+"\n")
}

func TestDriver_Start_MissingCommand(t *testing.T) {
	d := newDriver(t)
	_, err := d.Start(context.Background(), newSpec(t, "ghost", "atoll-no-such-command", "arg"))
	if err == nil || !errors.Is(err, osexec.ErrNotFound) || !strings.Contains(err.Error(), `"atoll-no-such-command"`) {
		t.Errorf("err = %v, want not found naming the command", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "start ghost: ") {
		t.Errorf("err = %q, want it to start with the operation", err)
	}

	// The lookup uses the workload's PATH, not the agent's.
	spec := newSpec(t, "nopath", "sh", "-c", "true")
	spec.Exec.Env = map[string]string{"PATH": "/nonexistent"}
	if _, err := d.Start(context.Background(), spec); !errors.Is(err, osexec.ErrNotFound) {
		t.Errorf("sh with PATH=/nonexistent: err = %v, want not found", err)
	}

	_, err = d.Start(context.Background(), newSpec(t, "slash", "./atoll-not-here"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "./atoll-not-here") {
		t.Errorf("relative path: err = %v, want not exist naming it", err)
	}
}

func TestDriver_Start_BadSpec(t *testing.T) {
	d := newDriver(t)
	for name, spec := range map[string]driver.Spec{
		"no exec":   {Name: "a"},
		"empty cmd": {Name: "a", Exec: &driver.ExecConfig{}},
		"no name":   {Exec: &driver.ExecConfig{Command: []string{"true"}}},
		"negative":  {Name: "a", Exec: &driver.ExecConfig{Command: []string{"true"}}, MemoryLimit: -1},
	} {
		if _, err := d.Start(context.Background(), spec); err == nil {
			t.Errorf("%s: Start succeeded", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Start(ctx, newSpec(t, "late", "true")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v", err)
	}
}

func TestDriver_Wait_Context(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "patient", "sleep", "1000"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Wait(ctx, h); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with cancelled ctx: %v", err)
	}
	if !alive(st) {
		t.Error("workload died when Wait gave up")
	}
}

func TestDriver_Stop_Sleep(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "sleeper", "sleep", "1000"))
	began := time.Now()
	if err := d.Stop(context.Background(), h, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("stop took %v; sleep should die on SIGTERM", took)
	}
	if err := gone(st.PID, st.StartTicks)(); err != nil {
		t.Error(err)
	}
	if exit := wait(t, d, h); exit.Signal != "SIGTERM" {
		t.Errorf("exit = %+v, want SIGTERM", exit)
	}
	// Stopping again, or after Wait forgot it, is fine.
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestDriver_Stop_IgnoresTerm(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "stubborn", "sh", "-c",
		`trap "" TERM; sleep 1000 & while :; do sleep 1; done`))
	straggler := findMember(t, st.PID, "1000")

	const grace = 300 * time.Millisecond
	began := time.Now()
	if err := d.Stop(context.Background(), h, grace); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < grace {
		t.Errorf("stop took %v, less than the grace period", took)
	}
	if err := gone(st.PID, st.StartTicks)(); err != nil {
		t.Error(err)
	}
	if exit := wait(t, d, h); exit.Signal != "SIGKILL" {
		t.Errorf("exit = %+v, want SIGKILL", exit)
	}
	atolltest.WaitFor(t, 5*time.Second, gone(straggler.pid, straggler.ticks))
	atolltest.WaitFor(t, 5*time.Second, func() error {
		if m := groupMembers(t, st.PID); len(m) > 0 {
			return fmt.Errorf("group %d still has %v", st.PID, m)
		}
		return nil
	})
}

// TestDriver_Stop_GroupOutlivesMain: the main process dies on SIGTERM but a
// child ignores it; Stop must not leave the child behind.
func TestDriver_Stop_GroupOutlivesMain(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "parent", "sh", "-c",
		`sh -c 'trap "" TERM; exec sleep 1000' & wait`))
	straggler := findMember(t, st.PID, "1000")
	if err := d.Stop(context.Background(), h, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if exit := wait(t, d, h); exit.Signal != "SIGTERM" {
		t.Errorf("exit = %+v, want SIGTERM", exit)
	}
	atolltest.WaitFor(t, 5*time.Second, gone(straggler.pid, straggler.ticks))
}

func TestDriver_Stop_AlreadyExited(t *testing.T) {
	d := newDriver(t)
	h, _ := start(t, d, newSpec(t, "brief", "true"))
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("exit = %+v", exit)
	}
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("stop after exit: %v", err)
	}
}

func TestDriver_Inspect(t *testing.T) {
	d := newDriver(t)
	before := time.Now()
	h, st := start(t, d, newSpec(t, "inspected", "sleep", "1000"))
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if info.PID != st.PID || info.Limits != "no limits declared" {
		t.Errorf("info = %+v", info)
	}
	// btime has whole seconds and ticks are 10ms: allow a little slack.
	if info.StartedAt.Before(before.Add(-2*time.Second)) || info.StartedAt.After(time.Now().Add(2*time.Second)) {
		t.Errorf("StartedAt = %v, want about %v", info.StartedAt, before)
	}
	if err := d.Stop(context.Background(), h, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("inspect after stop: %v, want ErrNotRunning", err)
	}
}

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte("42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{State: 'S', PPID: 1, PGID: 42, SID: 42, StartTicks: 123456}
	if st != want {
		t.Errorf("stat = %+v, want %+v", st, want)
	}
	if _, err := parseStat([]byte("42 (x) S 1 2")); err == nil {
		t.Error("short stat parsed")
	}
}

type member struct {
	pid   int
	ticks uint64
}

// findMember waits for a live process in group pgid whose command line
// contains arg.
func findMember(t *testing.T, pgid int, arg string) member {
	t.Helper()
	var m member
	atolltest.WaitFor(t, 5*time.Second, func() error {
		for pid, ticks := range groupMembers(t, pgid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
				m = member{pid, ticks}
				return nil
			}
		}
		return fmt.Errorf("no process with argument %q in group %d", arg, pgid)
	})
	// It must ignore SIGTERM for the test to mean anything.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &mask); err != nil {
				t.Fatal(err)
			}
			if mask&(1<<(unix.SIGTERM-1)) == 0 {
				t.Fatalf("pid %d does not ignore SIGTERM (SigIgn %s)", m.pid, strings.TrimSpace(v))
			}
		}
	}
	return m
}
