package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"

	"atoll.dev/atoll/internal/driver"
)

// The test binary doubles as a short-lived agent: with helperEnv set,
// TestMain starts a workload, prints its handle as JSON on stdout, and
// blocks until it is killed.
const (
	helperEnv       = "ATOLL_EXEC_TEST_HELPER"
	helperParentEnv = "ATOLL_EXEC_TEST_PARENT"
	helperLogEnv    = "ATOLL_EXEC_TEST_LOG"
	helperMemEnv    = "ATOLL_EXEC_TEST_MEMORY"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

func runHelper() int {
	mem, _ := strconv.ParseInt(os.Getenv(helperMemEnv), 10, 64)
	d := New(Config{CgroupParent: os.Getenv(helperParentEnv)})
	h, err := d.Start(context.Background(), driver.Spec{
		Name:        "survivor",
		Exec:        &driver.ExecConfig{Command: []string{"sh", "-c", "echo started; exec sleep 1000"}},
		MemoryLimit: mem,
		LogPath:     os.Getenv(helperLogEnv),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Block until the test kills us; the test holds our stdin open.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// testParent is a cgroup parent unique to this test run.
func testParent(t *testing.T) string {
	return fmt.Sprintf("atoll-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
}

// newDriver returns a Driver with a cgroup parent of its own, removed when
// the test ends.
func newDriver(t *testing.T) *Driver {
	t.Helper()
	return newDriverWith(t, Config{CgroupParent: testParent(t)})
}

func newDriverWith(t *testing.T, cfg Config) *Driver {
	t.Helper()
	d := New(cfg)
	t.Cleanup(func() {
		if err := d.RemoveCgroupParent(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// newSpec is a workload logging to a fresh file.
func newSpec(t *testing.T, name string, command ...string) driver.Spec {
	return driver.Spec{
		Name:    name,
		Exec:    &driver.ExecConfig{Command: command},
		LogPath: filepath.Join(t.TempDir(), "logs", name+".log"),
	}
}

// start starts spec and makes sure the workload is stopped when the test
// ends, whatever happens.
func start(t *testing.T, d *Driver, spec driver.Spec) (driver.Handle, handleState) {
	t.Helper()
	h, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Stop(ctx, h, 0); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	st, err := decodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	return h, st
}

// wait waits for the workload with a deadline.
func wait(t *testing.T, d *Driver, h driver.Handle) driver.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exit, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return exit
}

// readLog polls until the log contains want and returns it.
func readLog(t *testing.T, path, want string) string {
	t.Helper()
	return atolltest.WaitForFile(t, 5*time.Second, path, want)
}

// gone reports nil once pid has exited (gone or a zombie).
func gone(pid int, ticks uint64) func() error {
	return func() error {
		if alive(handleState{PID: pid, StartTicks: ticks}) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	}
}

// groupMembers lists live processes of process group pgid other than pgid
// itself.
func groupMembers(t *testing.T, pgid int) map[int]uint64 {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	members := map[int]uint64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		if s, err := readStat(pid); err == nil && s.PGID == pgid && !s.dead() {
			members[pid] = s.StartTicks
		}
	}
	return members
}
