package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
)

// mkfile creates path (and its parent directories) holding content.
func mkfile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		version Version
		memDir  string // relative to root; "-" for unusable
		cpuDir  string
		memMiss string
		cpuMiss string
	}{
		{
			name:    "empty root",
			setup:   func(*testing.T, string) {},
			version: None, memDir: "-", cpuDir: "-",
			memMiss: "no writable cgroup hierarchy", cpuMiss: "no writable cgroup hierarchy",
		},
		{
			name: "v2 with memory and cpu",
			setup: func(t *testing.T, root string) {
				mkfile(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
			},
			version: V2, memDir: ".", cpuDir: ".",
		},
		{
			name: "v2 without cpu",
			setup: func(t *testing.T, root string) {
				mkfile(t, filepath.Join(root, "cgroup.controllers"), "memory pids\n")
			},
			version: V2, memDir: ".", cpuDir: "-", cpuMiss: "cgroup v2 has no cpu controller",
		},
		{
			// A cgroup2 mount whose controllers are all bound to v1 (hybrid).
			name: "v2 without controllers falls back to v1",
			setup: func(t *testing.T, root string) {
				mkfile(t, filepath.Join(root, "cgroup.controllers"), "hugetlb\n")
				mkfile(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
			},
			version: V1, memDir: "memory", cpuDir: "-", cpuMiss: "no writable cgroup v1 cpu hierarchy",
		},
		{
			name: "v1 with co-mounted cpu,cpuacct",
			setup: func(t *testing.T, root string) {
				mkfile(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
				mkfile(t, filepath.Join(root, "cpu,cpuacct", "cpu.cfs_quota_us"), "-1\n")
				if err := os.Symlink("cpu,cpuacct", filepath.Join(root, "cpu")); err != nil {
					t.Fatal(err)
				}
			},
			version: V1, memDir: "memory", cpuDir: "cpu,cpuacct",
		},
		{
			name: "v1 cpu without bandwidth control",
			setup: func(t *testing.T, root string) {
				mkfile(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "1\n")
				mkfile(t, filepath.Join(root, "cpu", "cpu.shares"), "1024\n")
			},
			version: V1, memDir: "memory", cpuDir: "-", cpuMiss: "no writable cgroup v1 cpu hierarchy",
		},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, root)
			h := Detect(root)
			if h.Version != tt.version {
				t.Errorf("version = %v, want %v", h.Version, tt.version)
			}
			check := func(what string, c Controller, dir, missing string) {
				want := ""
				if dir != "-" {
					want = filepath.Join(root, dir)
				}
				if c.Dir != want {
					t.Errorf("%s dir = %q, want %q", what, c.Dir, want)
				}
				if c.Missing != missing {
					t.Errorf("%s missing = %q, want %q", what, c.Missing, missing)
				}
				if c.Usable() != (want != "") {
					t.Errorf("%s usable = %v with dir %q", what, c.Usable(), c.Dir)
				}
			}
			check("memory", h.Memory, tt.memDir, tt.memMiss)
			check("cpu", h.CPU, tt.cpuDir, tt.cpuMiss)
		})
	}
}

func TestCreate_V1Fake(t *testing.T) {
	root := t.TempDir()
	mem := filepath.Join(root, "memory")
	cpu := filepath.Join(root, "cpu")
	mkfile(t, filepath.Join(mem, "memory.limit_in_bytes"), "x")
	mkfile(t, filepath.Join(cpu, "cpu.cfs_quota_us"), "x")
	// cgroupfs makes the control files when the directory is made; a fake
	// root needs them in advance.
	for _, f := range []string{"memory/atoll/web/memory.limit_in_bytes", "cpu/atoll/web/cpu.cfs_quota_us", "cpu/atoll/web/cpu.cfs_period_us"} {
		mkfile(t, filepath.Join(root, f), "stale")
	}
	h := Detect(root)
	g, err := h.Create("atoll", "web", Limits{MemoryBytes: 64 << 20, MilliCPU: 250})
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := []string{filepath.Join(mem, "atoll", "web"), filepath.Join(cpu, "atoll", "web")}
	if g.Version != V1 || !slices.Equal(g.Paths, wantPaths) {
		t.Fatalf("group = %+v, want v1 %v", g, wantPaths)
	}
	for file, want := range map[string]string{
		"memory/atoll/web/memory.limit_in_bytes": "67108864",
		"cpu/atoll/web/cpu.cfs_quota_us":         "25000",
		"cpu/atoll/web/cpu.cfs_period_us":        "100000",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	// Only memory declared: the cpu hierarchy is not used at all.
	mkfile(t, filepath.Join(root, "memory/atoll/db/memory.limit_in_bytes"), "stale")
	g, err = h.Create("atoll", "db", Limits{MemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Paths, []string{filepath.Join(mem, "atoll", "db")}) {
		t.Errorf("paths = %v, want only the memory cgroup", g.Paths)
	}
	if _, err := os.Stat(filepath.Join(cpu, "atoll", "db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cpu cgroup for db exists (err %v), want none", err)
	}

	// A tiny CPU limit is raised to the kernel's minimum quota.
	mkfile(t, filepath.Join(root, "cpu/atoll/tiny/cpu.cfs_quota_us"), "stale")
	mkfile(t, filepath.Join(root, "cpu/atoll/tiny/cpu.cfs_period_us"), "stale")
	if _, err := h.Create("atoll", "tiny", Limits{MilliCPU: 1}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(cpu, "atoll/tiny/cpu.cfs_quota_us")); got != "1000" {
		t.Errorf("quota for 1m = %q, want 1000", got)
	}
}

func TestCreate_V2Fake(t *testing.T) {
	root := t.TempDir()
	mkfile(t, filepath.Join(root, "cgroup.controllers"), "cpu memory pids")
	for _, f := range []string{"cgroup.subtree_control", "edge/cgroup.subtree_control", "edge/apps/cgroup.subtree_control"} {
		mkfile(t, filepath.Join(root, f), "")
	}
	// A cgroup left from an earlier run that had a CPU limit.
	mkfile(t, filepath.Join(root, "edge/apps/web/memory.max"), "max")
	mkfile(t, filepath.Join(root, "edge/apps/web/cpu.max"), "50000 100000")

	g, err := Detect(root).Create("edge/apps", "web", Limits{MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != V2 || !slices.Equal(g.Paths, []string{filepath.Join(root, "edge/apps/web")}) {
		t.Fatalf("group = %+v", g)
	}
	for file, want := range map[string]string{
		"cgroup.subtree_control":           "+memory",
		"edge/cgroup.subtree_control":      "+memory",
		"edge/apps/cgroup.subtree_control": "+memory",
		"edge/apps/web/memory.max":         "33554432",
		"edge/apps/web/cpu.max":            "max 100000", // stale limit reset
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

func TestCreate_NothingUsable(t *testing.T) {
	g, err := Detect(t.TempDir()).Create("atoll", "web", Limits{MemoryBytes: 1 << 20, MilliCPU: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Paths) != 0 {
		t.Errorf("paths = %v, want none", g.Paths)
	}
	if err := g.Add(os.Getpid()); err != nil {
		t.Errorf("add to empty group: %v", err)
	}
	if err := g.Remove(0); err != nil {
		t.Errorf("remove empty group: %v", err)
	}
}

func TestCreate_BadNames(t *testing.T) {
	root := t.TempDir()
	mkfile(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "1")
	h := Detect(root)
	for _, c := range []struct{ parent, name string }{
		{"atoll", ""}, {"atoll", ".."}, {"atoll", "a/b"}, {"", "web"},
		{"/abs", "web"}, {"a/../b", "web"}, {"../up", "web"}, {"a//b", "web"},
	} {
		if _, err := h.Create(c.parent, c.name, Limits{MemoryBytes: 1 << 20}); err == nil {
			t.Errorf("Create(%q, %q) succeeded, want error", c.parent, c.name)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "memory")); len(entries) != 1 {
		t.Errorf("memory hierarchy has %d entries, want only the probe file", len(entries))
	}
}

// TestRealHierarchy exercises the node's own cgroups: limits written, a
// process moved in, killed through the group, and the cgroup removed.
func TestRealHierarchy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	h := Detect(DefaultRoot)
	if h.Version == None {
		t.Skipf("no writable cgroup hierarchy under %s: %s", DefaultRoot, h.Memory.Missing)
	}
	if !h.Memory.Usable() || !h.CPU.Usable() {
		t.Skipf("need memory and cpu controllers: memory %q, cpu %q", h.Memory.Missing, h.CPU.Missing)
	}
	parent := fmt.Sprintf("atoll-cgtest-%d", os.Getpid())
	t.Cleanup(func() {
		if err := h.RemoveParent(parent); err != nil {
			t.Errorf("remove parent: %v", err)
		}
	})
	g, err := h.Create(parent, "sleeper", Limits{MemoryBytes: 64 << 20, MilliCPU: 250})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Kill(); _ = g.Remove(time.Second) })

	memFile, cpuFile := "memory.limit_in_bytes", "cpu.cfs_quota_us"
	memWant, cpuWant := "67108864", "25000"
	if h.Version == V2 {
		memFile, cpuFile, cpuWant = "memory.max", "cpu.max", "25000 100000"
	}
	if got := readFile(t, filepath.Join(h.Memory.Dir, parent, "sleeper", memFile)); got != memWant {
		t.Errorf("%s = %q, want %q", memFile, got, memWant)
	}
	if got := readFile(t, filepath.Join(h.CPU.Dir, parent, "sleeper", cpuFile)); got != cpuWant {
		t.Errorf("%s = %q, want %q", cpuFile, got, cpuWant)
	}

	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := g.Add(pid); err != nil {
		t.Fatal(err)
	}
	pids, err := g.Pids()
	if err != nil || !slices.Equal(pids, []int{pid}) {
		t.Fatalf("pids = %v, %v; want [%d]", pids, err, pid)
	}
	self := readFile(t, fmt.Sprintf("/proc/%d/cgroup", pid))
	if !strings.Contains(self, "/"+parent+"/sleeper\n") && !strings.HasSuffix(self, "/"+parent+"/sleeper") {
		t.Errorf("/proc/%d/cgroup does not name the workload cgroup:\n%s", pid, self)
	}

	// A populated cgroup cannot be removed.
	if err := g.Remove(0); !errors.Is(err, ErrPopulated) {
		t.Fatalf("Remove(0) of a populated cgroup = %v, want ErrPopulated", err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("sleep ended with %v, want SIGKILL", err)
	}
	if err := g.Remove(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range g.Paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Remove (stat: %v)", p, err)
		}
	}
}

// unifiedGroup makes a v2 group in a writable cgroup2 mount without
// controllers (the "unified" mount of a hybrid v1 node), enough to test
// membership, cgroup.kill and removal; it skips when there is none.
func unifiedGroup(t *testing.T) Group {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mount := filepath.Join(DefaultRoot, "unified")
	if fileExists(filepath.Join(DefaultRoot, "cgroup.controllers")) {
		mount = DefaultRoot
	}
	if !fileExists(filepath.Join(mount, "cgroup.procs")) {
		t.Skipf("no cgroup2 mount at %s", mount)
	}
	parent := filepath.Join(mount, fmt.Sprintf("atoll-cgtest-v2-%d", os.Getpid()))
	path := filepath.Join(parent, "w")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Skipf("cgroup2 mount %s not writable: %v", mount, err)
	}
	t.Cleanup(func() {
		if err := rmdir(parent, 0); err != nil {
			t.Errorf("remove %s: %v", parent, err)
		}
	})
	if !fileExists(filepath.Join(path, "cgroup.kill")) {
		t.Skip("kernel without cgroup.kill (Linux < 5.14)")
	}
	return Group{Version: V2, Paths: []string{path}}
}

func TestGroup_V2Kill(t *testing.T) {
	g := unifiedGroup(t)
	// The shell forks its background sleep only once told to, after the
	// move, so both end up in the group.
	cmd := exec.Command("sh", "-c", "read go; sleep 1000 & exec sleep 1000")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	atolltest.WaitFor(t, 5*time.Second, func() error {
		pids, err := g.Pids()
		if err == nil && len(pids) != 2 {
			err = fmt.Errorf("members = %v, want the shell and its background sleep", pids)
		}
		return err
	})
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := g.Remove(2 * time.Second); err != nil {
		t.Fatalf("remove after cgroup.kill: %v", err)
	}
}
