package supervisor

import (
	"testing"
	"time"
)

func TestBackoff_Next(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second, resetAfter: 10 * time.Second}
	tests := []struct {
		name         string
		failures     int
		ranFor       time.Duration
		want         time.Duration
		wantFailures int
	}{
		{"first failure", 0, 0, 100 * time.Millisecond, 1},
		{"second doubles", 1, time.Millisecond, 200 * time.Millisecond, 2},
		{"third doubles again", 2, time.Millisecond, 400 * time.Millisecond, 3},
		{"capped at max", 4, time.Millisecond, time.Second, 5},
		{"stays capped", 40, time.Millisecond, time.Second, 41},
		{"healthy run resets", 7, 10 * time.Second, 100 * time.Millisecond, 1},
		{"just short of reset grows", 3, 9 * time.Second, 800 * time.Millisecond, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, f := b.next(tt.failures, tt.ranFor)
			if got != tt.want || f != tt.wantFailures {
				t.Fatalf("next(%d, %v) = %v, %d; want %v, %d", tt.failures, tt.ranFor, got, f, tt.want, tt.wantFailures)
			}
		})
	}
}

func TestBackoff_ZeroInitialRestartsAtOnce(t *testing.T) {
	b := backoff{initial: 0, max: time.Minute, resetAfter: time.Second}
	for f := 0; f < 5; f++ {
		if d, _ := b.next(f, 0); d != 0 {
			t.Fatalf("failure %d: delay %v, want 0", f, d)
		}
	}
}
