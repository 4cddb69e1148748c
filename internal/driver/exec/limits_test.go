package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"atoll.dev/atoll/internal/cgroup"
)

func TestLimitsText(t *testing.T) {
	v1 := cgroup.Hierarchy{Version: cgroup.V1,
		Memory: cgroup.Controller{Dir: "/sys/fs/cgroup/memory"},
		CPU:    cgroup.Controller{Dir: "/sys/fs/cgroup/cpu"}}
	none := cgroup.Hierarchy{
		Memory: cgroup.Controller{Missing: "no writable cgroup hierarchy"},
		CPU:    cgroup.Controller{Missing: "no writable cgroup hierarchy"}}
	v2NoCPU := cgroup.Hierarchy{Version: cgroup.V2,
		Memory: cgroup.Controller{Dir: "/sys/fs/cgroup"},
		CPU:    cgroup.Controller{Missing: "cgroup v2 has no cpu controller"}}
	tests := []struct {
		l    cgroup.Limits
		h    cgroup.Hierarchy
		want string
	}{
		{cgroup.Limits{}, v1, "no limits declared"},
		{cgroup.Limits{}, none, "no limits declared"},
		{cgroup.Limits{MemoryBytes: 64 << 20, MilliCPU: 250}, v1, "memory 64Mi, cpu 250m enforced by cgroup v1"},
		{cgroup.Limits{MilliCPU: 1500}, v1, "cpu 1500m enforced by cgroup v1"},
		{cgroup.Limits{MemoryBytes: 64 << 20, MilliCPU: 250}, none,
			"memory 64Mi, cpu 250m declared but NOT enforced: no writable cgroup hierarchy"},
		{cgroup.Limits{MemoryBytes: 1 << 30, MilliCPU: 500}, v2NoCPU,
			"memory 1Gi enforced by cgroup v2; cpu 500m declared but NOT enforced: cgroup v2 has no cpu controller"},
		{cgroup.Limits{MemoryBytes: 1 << 30}, v2NoCPU, "memory 1Gi enforced by cgroup v2"},
	}
	for _, tt := range tests {
		if got := limitsText(tt.l, tt.h); got != tt.want {
			t.Errorf("limitsText(%+v, %v) = %q, want %q", tt.l, tt.h.Version, got, tt.want)
		}
	}
}

func TestLimitsMode(t *testing.T) {
	v1 := cgroup.Hierarchy{Version: cgroup.V1,
		Memory: cgroup.Controller{Dir: "/m"}, CPU: cgroup.Controller{Dir: "/c"}}
	memOnly := cgroup.Hierarchy{Version: cgroup.V1,
		Memory: cgroup.Controller{Dir: "/m"}, CPU: cgroup.Controller{Missing: "no writable cgroup v1 cpu hierarchy"}}
	none := cgroup.Detect(t.TempDir())
	for _, tt := range []struct {
		h    cgroup.Hierarchy
		want string
	}{
		{v1, "cgroup v1"},
		{memOnly, "cgroup v1 memory only; cpu not enforced: no writable cgroup v1 cpu hierarchy"},
		{none, "not enforced: no writable cgroup hierarchy"},
	} {
		if got := limitsMode(tt.h); got != tt.want {
			t.Errorf("limitsMode = %q, want %q", got, tt.want)
		}
	}
	d := newDriverWith(t, Config{CgroupParent: testParent(t), CgroupRoot: t.TempDir()})
	if got := d.LimitsMode(); got != "not enforced: no writable cgroup hierarchy" {
		t.Errorf("LimitsMode without cgroups = %q", got)
	}
}

func TestFormatBytes(t *testing.T) {
	for b, want := range map[int64]string{
		64 << 20: "64Mi", 1 << 30: "1Gi", 1536 << 20: "1536Mi", 512 << 10: "512Ki",
		3 << 40: "3Ti", 1000: "1000", 1_000_000: "1000000",
	} {
		if got := formatBytes(b); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", b, got, want)
		}
	}
}

// needCgroups skips a test that needs the node's real memory and cpu
// cgroups when this process cannot use them.
func needCgroups(t *testing.T, d *Driver) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	if !d.hier.Memory.Usable() || !d.hier.CPU.Usable() {
		t.Skipf("no usable memory and cpu cgroups under %s: memory %q, cpu %q",
			d.cfg.CgroupRoot, d.hier.Memory.Missing, d.hier.CPU.Missing)
	}
}

func TestDriver_Limits_Enforced(t *testing.T) {
	d := newDriver(t)
	needCgroups(t, d)
	spec := newSpec(t, "limited", "sleep", "1000")
	spec.MemoryLimit = 64 << 20
	spec.MilliCPU = 250
	h, st := start(t, d, spec)

	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	want := "memory 64Mi, cpu 250m enforced by " + d.hier.Version.String()
	if info.Limits != want {
		t.Errorf("limits = %q, want %q", info.Limits, want)
	}

	memDir := filepath.Join(d.hier.Memory.Dir, d.cfg.CgroupParent, "limited")
	cpuDir := filepath.Join(d.hier.CPU.Dir, d.cfg.CgroupParent, "limited")
	files := map[string]string{
		filepath.Join(memDir, "memory.limit_in_bytes"): "67108864",
		filepath.Join(cpuDir, "cpu.cfs_quota_us"):      "25000",
		filepath.Join(cpuDir, "cpu.cfs_period_us"):     "100000",
	}
	if d.hier.Version == cgroup.V2 {
		files = map[string]string{
			filepath.Join(memDir, "memory.max"): "67108864",
			filepath.Join(cpuDir, "cpu.max"):    "25000 100000",
		}
	}
	for file, want := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(data)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	pids, err := st.Cgroup.Pids()
	if err != nil || len(pids) != 1 || pids[0] != st.PID {
		t.Errorf("cgroup members = %v, %v; want [%d]", pids, err, st.PID)
	}
	self, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(self), "/"+d.cfg.CgroupParent+"/limited\n") {
		t.Errorf("/proc/%d/cgroup does not name the workload's cgroup:\n%s", st.PID, self)
	}

	if err := d.Stop(context.Background(), h, 0); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{memDir, cpuDir} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after Stop (%v)", dir, err)
		}
	}
}

// TestDriver_Limits_OOM proves the memory limit bites: a shell that holds
// 64 MiB in a variable under a 16 MiB limit is killed.
func TestDriver_Limits_OOM(t *testing.T) {
	d := newDriver(t)
	needCgroups(t, d)
	spec := newSpec(t, "hungry", "sh", "-c", `x=$(head -c 67108864 /dev/zero | tr '\000' a); echo survived ${#x}`)
	spec.MemoryLimit = 16 << 20
	h, _ := start(t, d, spec)
	exit := wait(t, d, h)
	if exit.Signal != "SIGKILL" {
		log, _ := os.ReadFile(spec.LogPath)
		t.Errorf("exit = %+v, want SIGKILL by the OOM killer; log: %s", exit, log)
	}
}

func TestDriver_Limits_NotEnforced(t *testing.T) {
	// A root without cgroup mounts stands for a node without a writable
	// hierarchy (not root, read-only /sys/fs/cgroup, no controllers).
	d := newDriverWith(t, Config{CgroupParent: testParent(t), CgroupRoot: t.TempDir()})
	spec := newSpec(t, "unbounded", "sleep", "1000")
	spec.MemoryLimit = 64 << 20
	spec.MilliCPU = 250
	h, st := start(t, d, spec)
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	want := "memory 64Mi, cpu 250m declared but NOT enforced: no writable cgroup hierarchy"
	if info.Limits != want {
		t.Errorf("limits = %q, want %q", info.Limits, want)
	}
	if len(st.Cgroup.Paths) != 0 || !alive(st) {
		t.Errorf("cgroup %v, alive %v; want none and running", st.Cgroup.Paths, alive(st))
	}
}

func TestDriver_Limits_NoneDeclared(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "free", "sleep", "1000"))
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if info.Limits != "no limits declared" || len(st.Cgroup.Paths) != 0 {
		t.Errorf("limits %q, cgroup %v; want none", info.Limits, st.Cgroup.Paths)
	}
	for _, c := range []cgroup.Controller{d.hier.Memory, d.hier.CPU} {
		if !c.Usable() {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.Dir, d.cfg.CgroupParent)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup parent made in %s for a workload without limits (%v)", c.Dir, err)
		}
	}
}

// TestStartIn_V2CgroupFD checks that on cgroup v2 a workload is created
// inside its cgroup (clone3 with CLONE_INTO_CGROUP) rather than moved after
// it started. A cgroup2 mount without controllers is enough for that, so on
// a hybrid v1 node this uses the "unified" mount.
func TestStartIn_V2CgroupFD(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mount := filepath.Join(cgroup.DefaultRoot, "unified")
	if _, err := os.Stat(filepath.Join(cgroup.DefaultRoot, "cgroup.controllers")); err == nil {
		mount = cgroup.DefaultRoot
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup2 mount: %v", err)
	}
	parent := filepath.Join(mount, testParent(t))
	dir := filepath.Join(parent, "w")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cgroup2 mount %s not writable: %v", mount, err)
	}
	g := cgroup.Group{Version: cgroup.V2, Paths: []string{dir}}
	t.Cleanup(func() {
		if err := errors.Join(g.Remove(0), os.Remove(parent)); err != nil {
			t.Errorf("remove test cgroups: %v", err)
		}
	})

	cmd, err := startIn(func() *osexec.Cmd {
		c := osexec.Command("sleep", "1000")
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return c
	}, g)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if !cmd.SysProcAttr.UseCgroupFD {
		t.Error("started without CLONE_INTO_CGROUP and moved afterwards")
	}
	self, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	want := "0::/" + testParent(t) + "/w\n"
	if !strings.Contains(string(self), want) {
		t.Errorf("/proc/%d/cgroup lacks %q:\n%s", cmd.Process.Pid, want, self)
	}
}
