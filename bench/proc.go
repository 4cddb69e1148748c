package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// pids lists the processes in /proc, unsorted.
func pids() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// hasEnv reports whether the environment of pid holds the entry kv
// ("KEY=value") exactly. A process that is gone, a zombie or one we may not
// read has no environment.
func hasEnv(pid int, kv string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for entry := range bytes.SplitSeq(data, []byte{0}) {
		if string(entry) == kv {
			return true
		}
	}
	return false
}

// procStat is what the bench needs of /proc/PID/stat.
type procStat struct {
	state        byte
	ppid         int
	utime, stime uint64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// comm (field 2) may hold spaces and parentheses; fields after the last
	// ')' are plain. f[0] is field 3 (state).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(f))
	}
	var st procStat
	st.state = f[0][0]
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	if st.utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: utime: %w", pid, err)
	}
	if st.stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: stime: %w", pid, err)
	}
	return st, nil
}

// descendants returns every live process below pid (children, their
// children, ...), found through the parent PIDs in /proc.
func descendants(pid int) ([]int, error) {
	all, err := pids()
	if err != nil {
		return nil, err
	}
	kids := map[int][]int{}
	for _, p := range all {
		st, err := readStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		kids[st.ppid] = append(kids[st.ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, kids[p]...)
		queue = append(queue, kids[p]...)
	}
	return out, nil
}

// mem is one process's memory, in bytes.
type mem struct {
	vmRSS   int64 // /proc/PID/status VmRSS
	pss     int64 // smaps_rollup Pss
	private int64 // smaps_rollup Private_Clean + Private_Dirty
	anon    int64 // smaps_rollup Anonymous
}

func (m mem) add(o mem) mem {
	return mem{m.vmRSS + o.vmRSS, m.pss + o.pss, m.private + o.private, m.anon + o.anon}
}

// readMem reads pid's memory from /proc/PID/status and /proc/PID/smaps_rollup.
func readMem(pid int) (mem, error) {
	var m mem
	status, err := readKB("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS")
	if err != nil {
		return m, err
	}
	rollup, err := readKB("/proc/"+strconv.Itoa(pid)+"/smaps_rollup", "Pss", "Private_Clean", "Private_Dirty", "Anonymous")
	if err != nil {
		return m, err
	}
	m.vmRSS = status["VmRSS"]
	m.pss = rollup["Pss"]
	m.private = rollup["Private_Clean"] + rollup["Private_Dirty"]
	m.anon = rollup["Anonymous"]
	return m, nil
}

// readKB reads "Key:   123 kB" lines of a /proc file and returns the wanted
// keys in bytes. Every wanted key must be present.
func readKB(path string, keys ...string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[k] {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return nil, fmt.Errorf("%s: unexpected %s line %q", path, k, sc.Text())
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, k, err)
		}
		out[k] = n << 10
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("%s: no %s line", path, k)
		}
	}
	return out, nil
}

// procWatch finds a new process carrying an environment entry by scanning
// /proc. Processes seen before are remembered so that a scan reads the
// environment of new processes only; a new child of parent that does not
// match yet is read again next time, because between fork and exec a child
// still shows its parent's environment.
type procWatch struct {
	parent int
	known  map[int]bool

	scans    int
	scanTime time.Duration
}

// prime remembers every process that exists now.
func (w *procWatch) prime() error {
	all, err := pids()
	if err != nil {
		return err
	}
	w.known = make(map[int]bool, len(all))
	for _, p := range all {
		w.known[p] = true
	}
	return nil
}

// find returns a process other than old whose environment holds kv, or 0.
// With full set it reads every process's environment, not just new ones
// (a guard against a remembered PID having been reused).
func (w *procWatch) find(kv string, old int, full bool) (int, error) {
	start := time.Now()
	defer func() {
		w.scans++
		w.scanTime += time.Since(start)
	}()
	all, err := pids()
	if err != nil {
		return 0, err
	}
	for _, p := range all {
		if p == old || (!full && w.known[p]) {
			continue
		}
		if hasEnv(p, kv) {
			return p, nil
		}
		if full {
			continue
		}
		st, err := readStat(p)
		if err == nil && st.ppid == w.parent {
			continue // maybe not exec'd yet: look again next time
		}
		w.known[p] = true
	}
	return 0, nil
}

// gone reports whether pid no longer runs: it does not exist or is a zombie.
func gone(pid int) bool {
	st, err := readStat(pid)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && (st.state == 'Z' || st.state == 'X')
}

// threadCPU returns the on-CPU time of each thread of pid, in nanoseconds,
// from /proc/PID/task/TID/schedstat (sum_exec_runtime). Unlike utime and
// stime it is not rounded to clock ticks.
func threadCPU(pid int) (map[int]uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := make(map[int]uint64, len(names))
	for _, n := range names {
		tid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(dir + "/" + n + "/schedstat")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(data))
		if len(f) < 1 {
			return nil, fmt.Errorf("%s/%s/schedstat: empty", dir, n)
		}
		if out[tid], err = strconv.ParseUint(f[0], 10, 64); err != nil {
			return nil, fmt.Errorf("%s/%s/schedstat: %w", dir, n, err)
		}
	}
	return out, nil
}

// cpuSince returns the on-CPU time threads spent between two threadCPU
// readings; a thread that is new in after counts from zero. Time of threads
// that exited in between is lost.
func cpuSince(before, after map[int]uint64) time.Duration {
	var ns uint64
	for tid, t := range after {
		if b := before[tid]; t >= b {
			ns += t - b
		}
	}
	return time.Duration(ns)
}
