// Package proc reads what end-to-end tests check about real processes
// from /proc: state, parent, process group, start time and environment.
package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what the tests read from /proc/PID/stat.
type Stat struct {
	State      byte // R, S, D, Z, X, ...
	PPID, PGID int
	StartTicks uint64
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("pid %d: bad stat %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("pid %d: short stat %q", pid, s)
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return Stat{State: f[0][0], PPID: ppid, PGID: pgid, StartTicks: start}, nil
}

// Alive reports whether pid is a live (not zombie) process.
func Alive(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && s.State != 'Z' && s.State != 'X'
}

// Environ returns a process's environment, nil if it cannot be read (a
// zombie's is empty).
func Environ(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// EnvValue returns the value of key in env.
func EnvValue(env []string, key string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}
