package exec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// procStat is what the driver reads from /proc/<pid>/stat.
type procStat struct {
	State      byte   // field 3: R, S, D, Z, X, ...
	PPID       int    // field 4
	PGID       int    // field 5
	SID        int    // field 6
	StartTicks uint64 // field 22: start time in clock ticks since boot
}

// readStat parses /proc/<pid>/stat. A missing process yields an error for
// which errors.Is(err, os.ErrNotExist) holds.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

func parseStat(data []byte) (procStat, error) {
	// The command name (field 2) is in parentheses and may itself contain
	// spaces and parentheses, so fields are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("parse stat: no command name")
	}
	f := strings.Fields(string(data[i+1:]))
	const startIdx = 22 - 3 // f[0] is field 3
	if len(f) <= startIdx || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse stat: %d fields after command name", len(f))
	}
	var st procStat
	st.State = f[0][0]
	var errs [4]error
	st.PPID, errs[0] = strconv.Atoi(f[4-3])
	st.PGID, errs[1] = strconv.Atoi(f[5-3])
	st.SID, errs[2] = strconv.Atoi(f[6-3])
	st.StartTicks, errs[3] = strconv.ParseUint(f[startIdx], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return procStat{}, fmt.Errorf("parse stat: %w", err)
	}
	return st, nil
}

// dead reports whether a process in this state has exited (a zombie waiting
// to be reaped, or being reaped).
func (s procStat) dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// readBootID returns the kernel's boot id, which changes on every boot.
func readBootID() (string, error) {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// bootTime returns when the machine booted, from the btime line of
// /proc/stat (whole seconds).
func bootTime() (time.Time, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("read boot time: %w", err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, errors.New("read boot time: no btime in /proc/stat")
}

// clockTicks is the unit of /proc/<pid>/stat times (USER_HZ), taken from
// the AT_CLKTCK entry of the auxiliary vector; 100 if that cannot be read,
// which is its value on every common architecture.
var clockTicks = sync.OnceValue(func() uint64 {
	const atClkTck = 17
	data, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	word := int(unsafe.Sizeof(uintptr(0)))
	for i := 0; i+2*word <= len(data); i += 2 * word {
		key, val := readWord(data[i:], word), readWord(data[i+word:], word)
		if key == atClkTck && val > 0 {
			return val
		}
	}
	return 100
})

func readWord(b []byte, size int) uint64 {
	if size == 4 {
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return binary.NativeEndian.Uint64(b)
}

// startedAt converts a start time in clock ticks since boot to wall time.
func startedAt(ticks uint64) (time.Time, error) {
	boot, err := bootTime()
	if err != nil {
		return time.Time{}, err
	}
	hz := clockTicks()
	return boot.Add(time.Duration(ticks/hz)*time.Second +
		time.Duration(ticks%hz)*time.Second/time.Duration(hz)), nil
}
