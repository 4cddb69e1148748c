package wasm

import (
	"strings"
	"testing"
)

func TestMemoryPages(t *testing.T) {
	for _, tc := range []struct {
		limit   int64
		want    uint32
		wantErr string
	}{
		{0, 0, ""},
		{64 << 10, 1, ""},
		{64 << 20, 1024, ""},
		{100 << 10, 1, ""}, // rounded down: never above the limit
		{4 << 30, 65536, ""},
		{8 << 30, 65536, ""}, // clamped to the wasm32 maximum
		{1000, 0, "below one wasm page"},
		{-5, 0, "negative"},
	} {
		got, err := memoryPages(tc.limit)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("memoryPages(%d) error = %v, want %q", tc.limit, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("memoryPages(%d) = %d, %v; want %d", tc.limit, got, err, tc.want)
		}
	}
}

func TestDescribeLimits(t *testing.T) {
	for _, tc := range []struct {
		mem      int64
		milliCPU int64
		want     string
	}{
		{0, 0, "no limits declared"},
		{64 << 20, 0, "memory 64Mi enforced by wazero (1024 pages)"},
		{64 << 10, 0, "memory 64Ki enforced by wazero (1 page)"},
		{100 << 10, 0, "memory 100Ki enforced by wazero (1 page), rounded down to 64Ki"},
		{8 << 30, 0, "memory 8Gi declared, wasm32 caps it at 4Gi (65536 pages)"},
		{0, 250, "cpu 250m declared but NOT enforced for wasm"},
		{0, 2000, "cpu 2 declared but NOT enforced for wasm"},
		{32 << 20, 1500, "memory 32Mi enforced by wazero (512 pages); cpu 1500m declared but NOT enforced for wasm"},
	} {
		pages, err := memoryPages(tc.mem)
		if err != nil {
			t.Fatalf("memoryPages(%d): %v", tc.mem, err)
		}
		if got := describeLimits(tc.mem, pages, tc.milliCPU); got != tc.want {
			t.Errorf("describeLimits(%d, %d, %d) = %q, want %q", tc.mem, pages, tc.milliCPU, got, tc.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		1000:       "1000",
		1024:       "1Ki",
		1536 << 10: "1536Ki",
		64 << 20:   "64Mi",
		2 << 30:    "2Gi",
		1 << 40:    "1Ti",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
