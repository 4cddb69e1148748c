// Package hlc is a hybrid logical clock: timestamps that follow wall time
// but never go backwards and always order an event after everything its node
// has seen, so a hub change and a local override can be ordered even when
// the two clocks disagree.
package hlc

import (
	"fmt"
	"sync"

	"atoll.dev/atoll/internal/clock"
)

// Timestamp is a hybrid logical clock reading. The zero value is before
// every real reading.
type Timestamp struct {
	// Wall is physical time in Unix nanoseconds (the largest seen).
	Wall int64 `json:"wall"`
	// Logical orders readings that share a Wall.
	Logical uint32 `json:"logical,omitempty"`
}

// Before reports whether t happened before u.
func (t Timestamp) Before(u Timestamp) bool {
	return t.Wall < u.Wall || t.Wall == u.Wall && t.Logical < u.Logical
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// String renders t as "wall.logical".
func (t Timestamp) String() string { return fmt.Sprintf("%d.%d", t.Wall, t.Logical) }

// Clock issues timestamps. It is safe for concurrent use.
type Clock struct {
	phys clock.Clock
	mu   sync.Mutex
	last Timestamp // guarded by mu
}

// New returns a clock over phys that issues nothing at or before last
// (pass the largest stamp the node has persisted, so a restart with a
// clock that jumped back still moves forward).
func New(phys clock.Clock, last Timestamp) *Clock {
	return &Clock{phys: phys, last: last}
}

// Now returns a timestamp after every one issued or observed before.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := c.phys.Now().UnixNano()
	if wall > c.last.Wall {
		c.last = Timestamp{Wall: wall}
	} else {
		c.last.Logical++
	}
	return c.last
}

// Observe folds in a timestamp received from elsewhere, so that later
// readings of this clock come after it.
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Before(t) {
		c.last = t
	}
}
