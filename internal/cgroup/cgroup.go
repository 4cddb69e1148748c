// Package cgroup finds which cgroup hierarchy a Linux node offers (v2, v1 or
// none usable) and manages one cgroup per workload in it: create it with
// memory and CPU limits, move processes in, kill what is left, remove it.
//
// Layout: a workload's cgroup is <mount>/<parent>/<name>, where <mount> is the
// unified cgroup2 mount for v2, or the memory and cpu hierarchies' own mounts
// for v1 (so a v1 group is up to two directories). Only controllers for which
// a limit is declared are used; a workload with no limits gets no cgroup.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where cgroup hierarchies are mounted on Linux.
const DefaultRoot = "/sys/fs/cgroup"

// Version is the cgroup interface in use.
type Version int

// Cgroup versions.
const (
	None Version = iota // no usable hierarchy
	V1                  // legacy per-controller hierarchies
	V2                  // the unified hierarchy
)

// String returns "cgroup v1", "cgroup v2" or "no cgroup".
func (v Version) String() string {
	switch v {
	case V1:
		return "cgroup v1"
	case V2:
		return "cgroup v2"
	default:
		return "no cgroup"
	}
}

// Controller says where one controller's cgroups are created, or why it
// cannot be used.
type Controller struct {
	// Dir is the hierarchy directory under which cgroups using this
	// controller are created; empty when the controller is unusable.
	Dir string
	// Missing says why the controller cannot be used, in words fit for a
	// status line ("no writable cgroup hierarchy"); empty when usable.
	Missing string
}

// Usable reports whether limits for this controller can be enforced.
func (c Controller) Usable() bool { return c.Dir != "" }

// Hierarchy is what Detect found on the node.
type Hierarchy struct {
	Version Version
	Memory  Controller
	CPU     Controller
}

// reasonNone is Controller.Missing when no hierarchy at all is usable.
const reasonNone = "no writable cgroup hierarchy"

// Detect inspects the cgroup mounts under root (normally DefaultRoot).
//
// It picks cgroup v2 when root itself is a cgroup2 mount (it has a
// cgroup.controllers file) that is writable and lists memory or cpu among its
// controllers. Otherwise it picks cgroup v1 when root/memory or root/cpu is a
// writable v1 hierarchy (it has memory.limit_in_bytes, respectively
// cpu.cfs_quota_us). Otherwise the version is None and both controllers say
// why. Detect only reads; it never creates anything.
func Detect(root string) Hierarchy {
	if h, ok := detectV2(root); ok {
		return h
	}
	h := Hierarchy{
		Memory: detectV1(filepath.Join(root, "memory"), "memory.limit_in_bytes"),
		CPU:    detectV1(filepath.Join(root, "cpu"), "cpu.cfs_quota_us"),
	}
	switch {
	case h.Memory.Usable() || h.CPU.Usable():
		h.Version = V1
		if !h.Memory.Usable() {
			h.Memory.Missing = "no writable cgroup v1 memory hierarchy"
		}
		if !h.CPU.Usable() {
			h.CPU.Missing = "no writable cgroup v1 cpu hierarchy"
		}
	default:
		h.Memory.Missing = reasonNone
		h.CPU.Missing = reasonNone
	}
	return h
}

func detectV2(root string) (Hierarchy, bool) {
	data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil || unix.Access(root, unix.W_OK) != nil {
		return Hierarchy{}, false
	}
	have := strings.Fields(string(data))
	h := Hierarchy{Version: V2}
	ctl := func(name string) Controller {
		if slices.Contains(have, name) {
			return Controller{Dir: root}
		}
		return Controller{Missing: "cgroup v2 has no " + name + " controller"}
	}
	h.Memory, h.CPU = ctl("memory"), ctl("cpu")
	if !h.Memory.Usable() && !h.CPU.Usable() {
		return Hierarchy{}, false
	}
	return h, true
}

func detectV1(dir, probe string) Controller {
	if _, err := os.Stat(filepath.Join(dir, probe)); err != nil {
		return Controller{}
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return Controller{}
	}
	// root/cpu is often a symlink to a co-mounted "cpu,cpuacct"; resolve it
	// so co-mounted controllers compare equal.
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		dir = resolved
	}
	return Controller{Dir: dir}
}

// Limits are the limits a cgroup enforces; zero means none.
type Limits struct {
	MemoryBytes int64
	MilliCPU    int64
}

// Group is one workload's cgroup: a directory per v1 hierarchy used, or one
// directory for v2. The zero Group has no directories; its methods do
// nothing. A Group is plain data so it can be persisted and rebuilt.
type Group struct {
	Version Version  `json:"version"`
	Paths   []string `json:"paths"`
}

// cfsPeriod is the CPU bandwidth period in microseconds (the kernel default).
const cfsPeriod = 100_000

// minQuota is the smallest CFS quota the kernel accepts, in microseconds.
const minQuota = 1_000

// Create makes (or reuses) the cgroup parent/name for every usable controller
// whose limit is declared in l, and writes the limits. parent may have
// several path elements ("atoll/apps"); name must be a single one. Limit
// files of a used directory whose limit is not declared are reset to
// unlimited, so a reused cgroup never keeps a stale limit. CPU is limited
// with a quota per 100ms period; below 10m the kernel's 1ms minimum quota
// applies. With no usable controller for any declared limit, Create returns
// the zero Group and creates nothing.
func (h Hierarchy) Create(parent, name string, l Limits) (Group, error) {
	var dirs []string
	if l.MemoryBytes > 0 && h.Memory.Usable() {
		dirs = append(dirs, h.Memory.Dir)
	}
	if l.MilliCPU > 0 && h.CPU.Usable() && !slices.Contains(dirs, h.CPU.Dir) {
		dirs = append(dirs, h.CPU.Dir)
	}
	if len(dirs) == 0 {
		return Group{}, nil
	}
	if err := checkNames(parent, name); err != nil {
		return Group{}, fmt.Errorf("create cgroup %s/%s: %w", parent, name, err)
	}
	g := Group{Version: h.Version}
	for _, mount := range dirs {
		path := filepath.Join(mount, parent, name)
		if h.Version == V2 {
			if err := enableV2(mount, parent, l); err != nil {
				return g, fmt.Errorf("create cgroup %s: %w", path, err)
			}
		}
		if err := os.MkdirAll(path, 0o755); err != nil {
			return g, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		g.Paths = append(g.Paths, path)
		if err := h.writeLimits(mount, path, l); err != nil {
			return g, fmt.Errorf("create cgroup %s: %w", path, err)
		}
	}
	return g, nil
}

func checkNames(parent, name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("invalid cgroup name %q", name)
	}
	if parent == "" || filepath.IsAbs(parent) || parent != filepath.Clean(parent) ||
		slices.Contains(strings.Split(parent, "/"), "..") {
		return fmt.Errorf("invalid cgroup parent %q", parent)
	}
	return nil
}

// enableV2 turns on the controllers l needs in cgroup.subtree_control of the
// root and of every directory down to parent, creating them as needed.
func enableV2(root, parent string, l Limits) error {
	var want []string
	if l.MemoryBytes > 0 {
		want = append(want, "+memory")
	}
	if l.MilliCPU > 0 {
		want = append(want, "+cpu")
	}
	dir := root
	for _, elem := range append([]string{""}, strings.Split(parent, "/")...) {
		dir = filepath.Join(dir, elem)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(want, " ")); err != nil {
			return fmt.Errorf("enable controllers: %w", err)
		}
	}
	return nil
}

func (h Hierarchy) writeLimits(mount, path string, l Limits) error {
	type limit struct {
		file, value, unlimited string
		declared               bool
	}
	var limits []limit
	mem := strconv.FormatInt(l.MemoryBytes, 10)
	quota := strconv.FormatInt(max(l.MilliCPU*cfsPeriod/1000, minQuota), 10)
	switch h.Version {
	case V2:
		if h.Memory.Dir == mount {
			limits = append(limits, limit{"memory.max", mem, "max", l.MemoryBytes > 0})
		}
		if h.CPU.Dir == mount {
			limits = append(limits, limit{"cpu.max", quota + " " + strconv.Itoa(cfsPeriod), "max " + strconv.Itoa(cfsPeriod), l.MilliCPU > 0})
		}
	case V1:
		if h.Memory.Dir == mount {
			limits = append(limits, limit{"memory.limit_in_bytes", mem, "-1", l.MemoryBytes > 0})
		}
		if h.CPU.Dir == mount {
			limits = append(limits,
				limit{"cpu.cfs_period_us", strconv.Itoa(cfsPeriod), strconv.Itoa(cfsPeriod), l.MilliCPU > 0},
				limit{"cpu.cfs_quota_us", quota, "-1", l.MilliCPU > 0})
		}
	}
	for _, lim := range limits {
		file := filepath.Join(path, lim.file)
		switch {
		case lim.declared:
			if err := writeFile(file, lim.value); err != nil {
				return err
			}
		case fileExists(file):
			if err := writeFile(file, lim.unlimited); err != nil {
				return err
			}
		}
	}
	return nil
}

// Add moves pid (with all its threads) into every directory of the group.
func (g Group) Add(pid int) error {
	for _, p := range g.Paths {
		if err := writeFile(filepath.Join(p, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, p, err)
		}
	}
	return nil
}

// Pids lists the processes in the group's directories, without duplicates.
// Directories that no longer exist contribute nothing.
func (g Group) Pids() ([]int, error) {
	var pids []int
	for _, p := range g.Paths {
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroup %s: %w", p, err)
		}
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("list cgroup %s: bad pid %q", p, f)
			}
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the group. A process in a cgroup
// belongs to the workload, so this is safe even when the workload's main
// process is long gone.
func (g Group) Kill() error {
	if g.Version == V2 && len(g.Paths) == 1 {
		// cgroup.kill (Linux 5.14) kills the whole subtree atomically.
		if kill := filepath.Join(g.Paths[0], "cgroup.kill"); fileExists(kill) {
			if err := writeFile(kill, "1"); err != nil {
				return fmt.Errorf("kill cgroup: %w", err)
			}
			return nil
		}
	}
	pids, err := g.Pids()
	if err != nil {
		return fmt.Errorf("kill cgroup: %w", err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill cgroup member %d: %w", pid, err)
		}
	}
	return nil
}

// ErrPopulated is wrapped by Remove when a directory still holds processes.
var ErrPopulated = errors.New("cgroup still has processes")

// Remove deletes the group's directories. Directories already gone are not
// an error. A directory that still holds processes is retried for up to
// wait (the kernel releases tasks that were just killed asynchronously),
// then Remove fails with an error wrapping ErrPopulated. Call Kill first to
// empty the group; call Remove(0) to remove it only if it is already empty.
func (g Group) Remove(wait time.Duration) error {
	var errs []error
	for _, p := range g.Paths {
		if err := rmdir(p, wait); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveParent deletes parent (and its now-empty ancestors below each mount)
// from every usable hierarchy. It fails if a workload cgroup is still in it.
func (h Hierarchy) RemoveParent(parent string) error {
	if err := checkNames(parent, "x"); err != nil {
		return fmt.Errorf("remove cgroup parent: %w", err)
	}
	var mounts []string
	for _, c := range []Controller{h.Memory, h.CPU} {
		if c.Usable() && !slices.Contains(mounts, c.Dir) {
			mounts = append(mounts, c.Dir)
		}
	}
	var errs []error
	for _, mount := range mounts {
		for dir := parent; dir != "."; dir = filepath.Dir(dir) {
			if err := rmdir(filepath.Join(mount, dir), 0); err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup parent %s: %w", filepath.Join(mount, dir), err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// rmdir removes one cgroup directory, retrying for up to wait while the
// kernel says it is busy.
func rmdir(path string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	delay := time.Millisecond
	for {
		err := unix.Rmdir(path)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if errors.Is(err, unix.EBUSY) && !time.Now().Before(deadline) {
			return ErrPopulated
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(delay) // backoff for the kernel, not test synchronisation
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// writeFile writes one value to an existing control file. cgroupfs files
// exist as soon as their directory does, so it never creates files.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
