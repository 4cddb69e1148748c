package hlc_test

import (
	"testing"
	"time"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hlc"
)

// stuck is a physical clock that the test sets.
type stuck struct{ t time.Time }

func (s *stuck) Now() time.Time                       { return s.t }
func (s *stuck) NewTimer(d time.Duration) clock.Timer { panic("unused") }

func TestClock_MonotonicWhenWallStandsStillOrGoesBack(t *testing.T) {
	phys := &stuck{t: time.Unix(100, 0)}
	c := hlc.New(phys, hlc.Timestamp{})
	a := c.Now()
	b := c.Now()
	phys.t = time.Unix(50, 0) // the wall clock jumps back
	d := c.Now()
	if !a.Before(b) || !b.Before(d) {
		t.Fatalf("not increasing: %v %v %v", a, b, d)
	}
	if d.Wall != a.Wall || d.Logical != 2 {
		t.Errorf("after a backwards jump: %v, want wall %d logical 2", d, a.Wall)
	}
	phys.t = time.Unix(200, 0)
	if e := c.Now(); e.Wall != time.Unix(200, 0).UnixNano() || e.Logical != 0 {
		t.Errorf("wall moved on but stamp %v", e)
	}
}

func TestClock_ObserveOrdersAfterRemote(t *testing.T) {
	phys := &stuck{t: time.Unix(100, 0)}
	c := hlc.New(phys, hlc.Timestamp{})
	remote := hlc.Timestamp{Wall: time.Unix(500, 0).UnixNano(), Logical: 7}
	c.Observe(remote)
	if got := c.Now(); !remote.Before(got) {
		t.Fatalf("%v not after observed %v", got, remote)
	}
	c.Observe(hlc.Timestamp{Wall: 1}) // an older stamp changes nothing
	if got := c.Now(); got.Logical != 9 {
		t.Errorf("got %v", got)
	}
}

func TestClock_StartsAfterPersisted(t *testing.T) {
	last := hlc.Timestamp{Wall: time.Unix(900, 0).UnixNano(), Logical: 3}
	c := hlc.New(&stuck{t: time.Unix(100, 0)}, last)
	if got := c.Now(); !last.Before(got) {
		t.Fatalf("%v not after persisted %v", got, last)
	}
}
