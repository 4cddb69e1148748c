package supervisor

import (
	"fmt"
	"math"
	"sort"
)

// demand is what one workload asks of the node.
type demand struct {
	name     string
	priority int
	memory   int64 // bytes; 0 = undeclared
	milliCPU int64 // 0 = undeclared
}

// capacity is what the node offers to workloads.
type capacity struct {
	memory   int64
	milliCPU int64
}

// admit decides which workloads may run: highest priority first (ties by
// name, so the outcome is stable), each admitted if its declared resources
// fit in what is left. A workload that does not fit does not stop a smaller,
// less important one from being admitted after it. The returned map holds,
// for every workload that is not admitted, the reason.
func admit(ds []demand, c capacity) (blocked map[string]string) {
	sorted := append([]demand(nil), ds...)
	byImportance(sorted)
	blocked = make(map[string]string)
	memLeft, cpuLeft := c.memory, c.milliCPU
	for _, d := range sorted {
		switch {
		case d.memory > memLeft:
			blocked[d.name] = fmt.Sprintf("insufficient memory: needs %s, %s of %s left for priority %d",
				formatBytes(d.memory), formatBytes(memLeft), formatBytes(c.memory), d.priority)
		case d.milliCPU > cpuLeft:
			blocked[d.name] = fmt.Sprintf("insufficient cpu: needs %dm, %dm of %dm left for priority %d",
				d.milliCPU, cpuLeft, c.milliCPU, d.priority)
		default:
			memLeft -= d.memory
			cpuLeft -= d.milliCPU
		}
	}
	return blocked
}

// byImportance sorts most important first: higher priority, then name.
func byImportance(ds []demand) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].priority != ds[j].priority {
			return ds[i].priority > ds[j].priority
		}
		return ds[i].name < ds[j].name
	})
}

// formatBytes prints a byte count in the binary units manifests use.
func formatBytes(n int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%d%s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
