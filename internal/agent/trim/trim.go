// Package trim gives back the pages of the agent's own program that it
// touched once, while starting (package initialisation runs across the
// whole binary, which the hub's code shares), and will not need again. On a
// 1 GB device the agent's resident memory is the workloads' loss; most of
// it is the binary's mapped pages, not heap.
package trim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Program asks the kernel to reclaim the resident pages of the running
// program's read-only mappings (code and read-only data), with
// MADV_PAGEOUT: clean file pages, dropped from this process at once and
// read again from the page cache or the disk when next used. Pages in
// steady use come back within a moment; the rest stay out. It returns how
// many bytes of mappings it advised.
func Program() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	defer f.Close()
	var advised int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); errno != 0 {
			return advised, fmt.Errorf("trim: madvise %s: %w", fields[0], errno)
		}
		advised += int64(end - start)
	}
	return advised, sc.Err()
}
