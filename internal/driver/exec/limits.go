package exec

import (
	"fmt"
	"strconv"
	"strings"

	"atoll.dev/atoll/internal/cgroup"
)

// limitsText says plainly which of the declared limits are enforced and
// how, for driver.Info.Limits. Examples:
//
//	no limits declared
//	memory 64Mi, cpu 250m enforced by cgroup v1
//	memory 64Mi, cpu 250m declared but NOT enforced: no writable cgroup hierarchy
//	memory 64Mi enforced by cgroup v1; cpu 250m declared but NOT enforced: no writable cgroup v1 cpu hierarchy
func limitsText(l cgroup.Limits, h cgroup.Hierarchy) string {
	type item struct {
		text string
		ctl  cgroup.Controller
	}
	var items []item
	if l.MemoryBytes > 0 {
		items = append(items, item{"memory " + formatBytes(l.MemoryBytes), h.Memory})
	}
	if l.MilliCPU > 0 {
		items = append(items, item{"cpu " + strconv.FormatInt(l.MilliCPU, 10) + "m", h.CPU})
	}
	if len(items) == 0 {
		return "no limits declared"
	}
	var enforced, reasons []string
	unenforced := map[string][]string{}
	for _, it := range items {
		if it.ctl.Usable() {
			enforced = append(enforced, it.text)
			continue
		}
		if _, seen := unenforced[it.ctl.Missing]; !seen {
			reasons = append(reasons, it.ctl.Missing)
		}
		unenforced[it.ctl.Missing] = append(unenforced[it.ctl.Missing], it.text)
	}
	var parts []string
	if len(enforced) > 0 {
		parts = append(parts, strings.Join(enforced, ", ")+" enforced by "+h.Version.String())
	}
	for _, r := range reasons {
		parts = append(parts, strings.Join(unenforced[r], ", ")+" declared but NOT enforced: "+r)
	}
	return strings.Join(parts, "; ")
}

// formatBytes writes a byte count as a Kubernetes-style quantity: with the
// largest binary suffix that divides it exactly (64Mi, 1Gi), else plain.
func formatBytes(b int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b%u.size == 0 {
			return strconv.FormatInt(b/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}

// LimitsMode says in one line how this node enforces workload limits, for
// node status: "cgroup v1", "cgroup v2", "cgroup v1 memory only; cpu not
// enforced: no writable cgroup v1 cpu hierarchy", or "not enforced: no
// writable cgroup hierarchy".
func (d *Driver) LimitsMode() string { return limitsMode(d.hier) }

func limitsMode(h cgroup.Hierarchy) string {
	switch {
	case h.Memory.Usable() && h.CPU.Usable():
		return h.Version.String()
	case h.Memory.Usable():
		return h.Version.String() + " memory only; cpu not enforced: " + h.CPU.Missing
	case h.CPU.Usable():
		return h.Version.String() + " cpu only; memory not enforced: " + h.Memory.Missing
	default:
		return "not enforced: " + h.Memory.Missing
	}
}

// RemoveCgroupParent removes the CgroupParent directories this driver
// creates workload cgroups under. It fails while any workload cgroup is left
// in them. Meant for tests and uninstalling; the agent never needs it.
func (d *Driver) RemoveCgroupParent() error {
	if err := d.hier.RemoveParent(d.cfg.CgroupParent); err != nil {
		return fmt.Errorf("remove cgroup parent: %w", err)
	}
	return nil
}
