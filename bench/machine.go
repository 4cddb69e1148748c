package main

import (
	"bufio"
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// machine describes where the figures were taken.
type machine struct {
	cpu     string
	cores   int
	memory  string
	kernel  string
	goVer   string
	cgroups string
	tempFS  string
	load    string // 1-minute load average when the bench started
}

func (m machine) String() string {
	return fmt.Sprintf("%s, %d cores, %s RAM; Linux %s; %s; %s; temp dir on %s; load average %s at start",
		m.cpu, m.cores, m.memory, m.kernel, m.goVer, m.cgroups, m.tempFS, m.load)
}

// describeMachine reads the CPU model, cores, memory, kernel, cgroup layout
// and the file system of dir (where the agents keep their stores) from the
// running system, and the Go version from the built binary.
func describeMachine(bin, dir string) machine {
	m := machine{cpu: "unknown CPU", cores: runtime.NumCPU(), memory: "?", kernel: "?", goVer: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if kb, err := readKB("/proc/meminfo", "MemTotal"); err == nil {
		m.memory = fmt.Sprintf("%.1f GiB", float64(kb["MemTotal"])/(1<<30))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if info, err := buildinfo.ReadFile(bin); err == nil {
		m.goVer = info.GoVersion
	}
	switch {
	case exists("/sys/fs/cgroup/cgroup.controllers"):
		m.cgroups = "cgroup v2"
	case exists("/sys/fs/cgroup/unified"):
		m.cgroups = "cgroup v1 (hybrid)"
	case exists("/sys/fs/cgroup/memory"):
		m.cgroups = "cgroup v1"
	default:
		m.cgroups = "no cgroups"
	}
	m.tempFS = fileSystem(dir)
	m.load = "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.load = f[0]
		}
	}
	return m
}

// fileSystem names the mount holding dir: "ext4 (/dev/vda)".
func fileSystem(dir string) string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "?"
	}
	defer f.Close()
	dir, _ = filepath.EvalSymlinks(dir)
	best, desc := "", "?"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		mnt := fs[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, desc = mnt, fmt.Sprintf("%s (%s)", fs[2], fs[0])
		}
	}
	return desc
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
