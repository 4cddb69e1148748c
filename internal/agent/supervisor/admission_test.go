package supervisor

import (
	"strings"
	"testing"
)

const mi = 1 << 20

func TestAdmit(t *testing.T) {
	c := capacity{memory: 100 * mi, milliCPU: 1000}
	tests := []struct {
		name        string
		ds          []demand
		wantBlocked []string
		reasonHas   string
	}{
		{
			name: "all fit",
			ds:   []demand{{name: "a", memory: 50 * mi}, {name: "b", memory: 50 * mi}},
		},
		{
			name: "lowest priority waits",
			ds: []demand{
				{name: "safety", priority: 100, memory: 60 * mi},
				{name: "uploader", priority: 1, memory: 60 * mi},
			},
			wantBlocked: []string{"uploader"},
			reasonHas:   "insufficient memory: needs 60Mi, 40Mi of 100Mi left",
		},
		{
			name: "priority beats name order",
			ds: []demand{
				{name: "a-low", priority: 0, memory: 80 * mi},
				{name: "z-high", priority: 5, memory: 80 * mi},
			},
			wantBlocked: []string{"a-low"},
		},
		{
			name: "smaller less important one still fits after a big one is blocked",
			ds: []demand{
				{name: "big", priority: 5, memory: 70 * mi},
				{name: "huge", priority: 3, memory: 90 * mi},
				{name: "small", priority: 1, memory: 20 * mi},
			},
			wantBlocked: []string{"huge"},
		},
		{
			name: "cpu counts too",
			ds: []demand{
				{name: "a", priority: 2, milliCPU: 800},
				{name: "b", priority: 1, milliCPU: 300},
			},
			wantBlocked: []string{"b"},
			reasonHas:   "insufficient cpu: needs 300m, 200m of 1000m left",
		},
		{
			name: "undeclared resources always fit",
			ds:   []demand{{name: "a", memory: 100 * mi}, {name: "b"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocked := admit(tt.ds, c)
			if len(blocked) != len(tt.wantBlocked) {
				t.Fatalf("blocked = %v, want %v", blocked, tt.wantBlocked)
			}
			for _, n := range tt.wantBlocked {
				r, ok := blocked[n]
				if !ok {
					t.Fatalf("%s not blocked: %v", n, blocked)
				}
				if !strings.Contains(r, tt.reasonHas) {
					t.Fatalf("reason %q lacks %q", r, tt.reasonHas)
				}
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 512: "512", 64 * mi: "64Mi", 1536 * mi: "1.5Gi", 1 << 30: "1Gi"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
