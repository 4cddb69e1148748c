package exec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/driver"
)

// recoverDriver is a fresh Driver sharing d's cgroup parent, as after an
// agent restart.
func recoverDriver(d *Driver) *Driver { return New(d.cfg) }

func TestDriver_Recover_Running(t *testing.T) {
	for _, mode := range []struct {
		name    string
		noPidfd bool
	}{{"pidfd", false}, {"proc_polling", true}} {
		t.Run(mode.name, func(t *testing.T) {
			d1 := newDriver(t)
			h, st := start(t, d1, newSpec(t, "long", "sleep", "1000"))

			d2 := recoverDriver(d1)
			d2.noPidfd = mode.noPidfd
			if err := d2.Recover(context.Background(), h); err != nil {
				t.Fatalf("recover: %v", err)
			}
			info, err := d2.Inspect(context.Background(), h)
			if err != nil || info.PID != st.PID {
				t.Fatalf("inspect after recover = %+v, %v", info, err)
			}

			exits := make(chan driver.Exit, 1)
			errs := make(chan error, 1)
			go func() {
				exit, err := d2.Wait(context.Background(), h)
				exits <- exit
				errs <- err
			}()
			if err := unix.Kill(st.PID, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			select {
			case exit := <-exits:
				if err := <-errs; err != nil {
					t.Fatalf("wait on recovered: %v", err)
				}
				// Not our child: the status is unknown.
				if exit.Code != -1 || exit.Signal != "" {
					t.Errorf("recovered exit = %+v, want code -1", exit)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Wait on the recovered process did not return after it was killed")
			}
			// The Driver that started it still reaps it and knows the signal.
			if exit := wait(t, d1, h); exit.Signal != "SIGKILL" {
				t.Errorf("starter's exit = %+v, want SIGKILL", exit)
			}
		})
	}
}

func TestDriver_Recover_Stop(t *testing.T) {
	d1 := newDriver(t)
	h, st := start(t, d1, newSpec(t, "adopted", "sh", "-c", `trap "" TERM; sleep 1000 & wait`))
	straggler := findMember(t, st.PID, "1000")
	d2 := recoverDriver(d1)
	if err := d2.Recover(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := d2.Stop(context.Background(), h, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if alive(st) {
		t.Error("recovered workload still runs after Stop")
	}
	atolltest.WaitFor(t, 5*time.Second, gone(straggler.pid, straggler.ticks))
}

func TestDriver_Recover_Gone(t *testing.T) {
	d1 := newDriver(t)
	h, _ := start(t, d1, newSpec(t, "done", "true"))
	wait(t, d1, h)

	d2 := recoverDriver(d1)
	if err := d2.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("recover exited: %v, want ErrNotRunning", err)
	}
	if _, err := d2.Wait(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("wait on exited: %v, want ErrNotRunning", err)
	}
	if _, err := d2.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("inspect exited: %v, want ErrNotRunning", err)
	}
	if err := d2.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("stop exited: %v", err)
	}
}

// editHandle returns h with its state changed by edit.
func editHandle(t *testing.T, h driver.Handle, edit func(*handleState)) driver.Handle {
	t.Helper()
	st, err := decodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	edit(&st)
	h2, err := st.handle()
	if err != nil {
		t.Fatal(err)
	}
	return h2
}

func TestDriver_Recover_Impostor(t *testing.T) {
	d1 := newDriver(t)
	h, st := start(t, d1, newSpec(t, "real", "sleep", "1000"))
	for name, edit := range map[string]func(*handleState){
		// The PID now belongs to a process that started at another time.
		"pid reused": func(s *handleState) { s.StartTicks++ },
		"rebooted":   func(s *handleState) { s.BootID = "00000000-0000-0000-0000-000000000000" },
	} {
		t.Run(name, func(t *testing.T) {
			forged := editHandle(t, h, edit)
			d2 := recoverDriver(d1)
			if err := d2.Recover(context.Background(), forged); !errors.Is(err, driver.ErrNotRunning) {
				t.Errorf("recover: %v, want ErrNotRunning", err)
			}
			// Stopping the forged handle must not touch the real process.
			if err := d2.Stop(context.Background(), forged, 0); err != nil {
				t.Errorf("stop forged: %v", err)
			}
			if !alive(st) {
				t.Fatal("stopping a forged handle killed the real process")
			}
		})
	}
}

func TestDriver_Recover_Zombie(t *testing.T) {
	// A child of the test that exits and is not reaped stays a zombie.
	cmd := osexec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	var s procStat
	atolltest.WaitFor(t, 5*time.Second, func() error {
		var err error
		if s, err = readStat(pid); err != nil || !s.dead() {
			return fmt.Errorf("pid %d not a zombie yet: %+v, %v", pid, s, err)
		}
		return nil
	})
	d := newDriver(t)
	h, err := handleState{Name: "zombie", PID: pid, StartTicks: s.StartTicks, BootID: d.bootID}.handle()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("recover zombie: %v, want ErrNotRunning", err)
	}
}

func TestDriver_Recover_BadHandle(t *testing.T) {
	d := newDriver(t)
	h, _ := start(t, d, newSpec(t, "valid", "sleep", "1000"))
	for name, bad := range map[string]driver.Handle{
		"other driver": {Driver: "wasm", Version: 1, State: h.State},
		"new version":  {Driver: "exec", Version: 2, State: h.State},
		"garbage":      {Driver: "exec", Version: 1, State: []byte("{")},
		"empty":        {Driver: "exec", Version: 1, State: []byte("{}")},
	} {
		err := d.Recover(context.Background(), bad)
		if err == nil || errors.Is(err, driver.ErrNotRunning) {
			t.Errorf("%s: err = %v, want a decoding error", name, err)
		}
	}
}

// TestDriver_Recover_AfterAgentKilled starts a workload from a separate
// process (the test binary as a helper agent), SIGKILLs that process, and
// recovers the workload from its handle: it must still be running, no longer
// a child of the dead agent, and stoppable by the new Driver.
func TestDriver_Recover_AfterAgentKilled(t *testing.T) {
	d := newDriver(t) // owns the cgroup parent the helper uses
	logPath := filepath.Join(t.TempDir(), "survivor.log")
	var mem int64
	if d.hier.Memory.Usable() {
		mem = 32 << 20
	}

	helper := osexec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(),
		helperEnv+"=1",
		helperParentEnv+"="+d.cfg.CgroupParent,
		helperLogEnv+"="+logPath,
		helperMemEnv+"="+strconv.FormatInt(mem, 10))
	var stderr bytes.Buffer
	helper.Stderr = &stderr
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("read handle from helper: %v; stderr: %s", err, stderr.String())
	}
	var h driver.Handle
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatalf("decode handle %q: %v", line, err)
	}
	st, err := decodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only if the test failed before stopping it.
		if alive(st) {
			_ = unix.Kill(-st.PID, unix.SIGKILL)
		}
	})
	readLog(t, logPath, "started")

	if err := helper.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := helper.Wait(); err == nil {
		t.Fatal("helper exited cleanly; want killed")
	}

	if err := d.Recover(context.Background(), h); err != nil {
		t.Fatalf("recover after agent death: %v", err)
	}
	s, err := readStat(st.PID)
	if err != nil || s.dead() {
		t.Fatalf("workload gone with its agent: %+v, %v", s, err)
	}
	if s.PPID == helper.Process.Pid {
		t.Errorf("workload still a child of the dead helper %d", s.PPID)
	}
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if mem > 0 {
		want := "memory 32Mi enforced by " + d.hier.Version.String()
		if info.Limits != want {
			t.Errorf("limits = %q, want %q", info.Limits, want)
		}
	}
	if err := d.Stop(context.Background(), h, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if alive(st) {
		t.Error("workload still runs after Stop")
	}
	for _, p := range st.Cgroup.Paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after Stop (%v)", p, err)
		}
	}
}

// TestWaitPidfd makes sure the pidfd path works on this kernel, so the
// "pidfd" case of TestDriver_Recover_Running does not pass by silently
// falling back to /proc polling.
func TestWaitPidfd(t *testing.T) {
	cmd := osexec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	f, err := openPidfd(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("pidfd unavailable: %v", err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var pollErr error
	if err := rc.Control(func(fd uintptr) {
		n, pollErr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if n != 0 || pollErr != nil {
		t.Fatalf("pidfd of a running process readable: %d, %v", n, pollErr)
	}
	done := make(chan error, 1)
	go func() { done <- waitPidfd(f) }()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitPidfd: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitPidfd did not return after the process was killed")
	}
}
