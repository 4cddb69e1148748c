package agent

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readMemInfo returns MemTotal and MemAvailable in bytes from a
// /proc/meminfo-formatted file.
func readMemInfo(path string) (total, avail int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read memory info: %w", err)
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, 0, fmt.Errorf("read memory info %s: %s has no value", path, key)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory info %s: %s: %w", path, key, err)
		}
		if key == "MemTotal" {
			total = kb * 1024
		} else {
			avail = kb * 1024
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read memory info %s: %w", path, err)
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("read memory info %s: MemTotal or MemAvailable missing", path)
	}
	return total, avail, nil
}
