package supervisor

import "time"

// backoff is the restart delay policy: initial, doubled for each
// consecutive failure, capped at max. A run that lasted at least resetAfter
// clears the failure count, so a workload that crashes once a day restarts
// at once rather than after the cap.
type backoff struct {
	initial, max, resetAfter time.Duration
}

// next returns the delay before the next start, given how many consecutive
// failures preceded this one and how long the instance that just ended ran.
// It returns the updated failure count.
func (b backoff) next(failures int, ranFor time.Duration) (time.Duration, int) {
	if ranFor >= b.resetAfter {
		failures = 0
	}
	d := b.initial
	for i := 0; i < failures && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	return d, failures + 1
}
