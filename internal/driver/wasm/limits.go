package wasm

import (
	"fmt"
	"strconv"
	"strings"
)

// pageSize is the size of a wasm memory page.
const pageSize = 64 << 10

// maxPages is the wasm32 memory maximum (4Gi), wazero's default limit.
const maxPages = 1 << 16

// memoryPages converts a memory limit in bytes to wasm pages, rounding down
// so the limit is never exceeded. 0 bytes means no limit and gives 0 pages
// (wazero's default). A limit below one page cannot be honoured and is an
// error; a limit above 4Gi is clamped to the wasm32 maximum.
func memoryPages(limit int64) (uint32, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("memory limit %d bytes is negative", limit)
	case limit == 0:
		return 0, nil
	case limit < pageSize:
		return 0, fmt.Errorf("memory limit %s is below one wasm page (64Ki)", formatBytes(limit))
	case limit/pageSize >= maxPages:
		return maxPages, nil
	default:
		return uint32(limit / pageSize), nil
	}
}

// describeLimits says plainly which limits are enforced and how, for
// driver.Info.Limits.
func describeLimits(memLimit int64, pages uint32, milliCPU int64) string {
	var parts []string
	if memLimit > 0 {
		s := fmt.Sprintf("memory %s enforced by wazero (%s)", formatBytes(memLimit), pluralPages(pages))
		switch full := int64(pages) * pageSize; {
		case memLimit > full && pages == maxPages:
			s = fmt.Sprintf("memory %s declared, wasm32 caps it at 4Gi (%s)", formatBytes(memLimit), pluralPages(pages))
		case memLimit > full:
			s += fmt.Sprintf(", rounded down to %s", formatBytes(full))
		}
		parts = append(parts, s)
	}
	if milliCPU > 0 {
		parts = append(parts, fmt.Sprintf("cpu %s declared but NOT enforced for wasm", formatMilliCPU(milliCPU)))
	}
	if len(parts) == 0 {
		return "no limits declared"
	}
	return strings.Join(parts, "; ")
}

func pluralPages(n uint32) string {
	if n == 1 {
		return "1 page"
	}
	return fmt.Sprintf("%d pages", n)
}

// formatBytes writes n in the largest binary unit that divides it exactly,
// Kubernetes style: 64Mi, 1536Ki, 1000.
func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatMilliCPU writes m thousandths of a core as a Kubernetes quantity:
// 250m, 1, 1500m.
func formatMilliCPU(m int64) string {
	if m%1000 == 0 {
		return strconv.FormatInt(m/1000, 10)
	}
	return strconv.FormatInt(m, 10) + "m"
}
