package fleet_test

import (
	"reflect"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestStateAt(t *testing.T) {
	for _, tc := range []struct {
		lastSeen time.Time
		want     string
	}{
		{time.Time{}, api.NodeNeverSeen},
		{t0, api.NodeConnected},
		{t0.Add(-wire.DisconnectedAfter + time.Nanosecond), api.NodeConnected},
		{t0.Add(-wire.DisconnectedAfter), api.NodeDisconnected},
		{t0.Add(-24 * time.Hour), api.NodeDisconnected},
	} {
		if got := fleet.New(nil, 0).StateAt(tc.lastSeen, t0); got != tc.want {
			t.Errorf("StateAt(%v) = %s, want %s", tc.lastSeen, got, tc.want)
		}
	}
	short := fleet.New(nil, time.Second)
	if got := short.StateAt(t0.Add(-time.Second), t0); got != api.NodeDisconnected {
		t.Errorf("with a 1s timeout, 1s of silence is %s", got)
	}
}

func TestFleet_Lifecycle(t *testing.T) {
	c := hubtest.NewClock(t0)
	f := fleet.New(c, 0)
	if got := f.State("n"); got != api.NodeNeverSeen {
		t.Fatalf("unknown node state = %s", got)
	}

	got := f.Seen("n", fleet.Session{LastSeen: c.Now(), StoredRevision: 2, AppliedRevision: 1})
	if !got.Connected || !got.Persist || !got.Since.IsZero() {
		t.Fatalf("first contact = %+v, want connected and persist", got)
	}
	f.Persisted("n", c.Now())
	if f.State("n") != api.NodeConnected {
		t.Fatalf("state after contact = %s", f.State("n"))
	}

	// Heartbeats within PersistEvery ask for no write; a replay with
	// lower revisions lowers nothing.
	c.Advance(wire.HeartbeatInterval)
	got = f.Seen("n", fleet.Session{LastSeen: c.Now(), StoredRevision: 1})
	if got.Connected || got.Persist {
		t.Fatalf("heartbeat 10s later = %+v, want nothing to do", got)
	}
	if s, _ := f.Get("n"); s.StoredRevision != 2 || s.AppliedRevision != 1 || !s.LastSeen.Equal(c.Now()) {
		t.Fatalf("session = %+v, want revisions 2/1 kept and lastSeen now", s)
	}
	c.Advance(wire.HeartbeatInterval)
	if got = f.Seen("n", fleet.Session{LastSeen: c.Now()}); got.Connected || got.Persist {
		t.Fatalf("heartbeat 20s after the last write = %+v, want nothing to do", got)
	}
	c.Advance(fleet.PersistEvery - 2*wire.HeartbeatInterval)
	if got = f.Seen("n", fleet.Session{LastSeen: c.Now()}); got.Connected || !got.Persist {
		t.Fatalf("heartbeat %v after the last write = %+v, want persist only", fleet.PersistEvery, got)
	}
	f.Persisted("n", c.Now())
	if lost := f.Sweep(); len(lost) != 0 {
		t.Fatalf("sweep of a connected node = %v", lost)
	}

	// Silence: disconnected, reported once by Sweep.
	last := c.Now()
	c.Advance(wire.DisconnectedAfter)
	if f.State("n") != api.NodeDisconnected {
		t.Fatalf("state after %v of silence = %s", wire.DisconnectedAfter, f.State("n"))
	}
	if lost := f.Sweep(); !reflect.DeepEqual(lost, []fleet.Lost{{Node: "n", LastSeen: last}}) {
		t.Fatalf("sweep = %v, want n lost since %v", lost, last)
	}
	if lost := f.Sweep(); len(lost) != 0 {
		t.Fatalf("second sweep = %v, want nothing new", lost)
	}

	// Back: a connect transition with the old lastSeen.
	c.Advance(time.Hour)
	got = f.Seen("n", fleet.Session{LastSeen: c.Now()})
	if !got.Connected || !got.Persist || !got.Since.Equal(last) || !got.Swept {
		t.Fatalf("contact after silence = %+v, want connected since %v, the silence swept", got, last)
	}
}

// TestFleet_SilenceWithoutSweep: a node back before any sweep noticed its
// silence still counts as reconnecting.
func TestFleet_SilenceWithoutSweep(t *testing.T) {
	c := hubtest.NewClock(t0)
	f := fleet.New(c, 0)
	f.Seen("n", fleet.Session{LastSeen: c.Now()})
	c.Advance(time.Minute)
	if got := f.Seen("n", fleet.Session{LastSeen: c.Now()}); !got.Connected || got.Swept {
		t.Fatalf("contact after a minute of silence = %+v, want a connect, not swept", got)
	}
}

func TestFleet_RestoreAndObserve(t *testing.T) {
	c := hubtest.NewClock(t0)
	f := fleet.New(c, 0)
	f.Restore("fresh", fleet.Session{LastSeen: t0.Add(-5 * time.Second), StoredRevision: 4})
	f.Restore("stale", fleet.Session{LastSeen: t0.Add(-time.Hour)})
	if f.State("fresh") != api.NodeConnected || f.State("stale") != api.NodeDisconnected {
		t.Fatalf("restored states = %s, %s", f.State("fresh"), f.State("stale"))
	}
	// A restored connected node that stays silent is reported lost; the
	// stale one was never connected in this hub's eyes.
	c.Advance(wire.DisconnectedAfter)
	if lost := f.Sweep(); len(lost) != 1 || lost[0].Node != "fresh" {
		t.Fatalf("sweep = %v, want only fresh", lost)
	}
	// Another hub handled a heartbeat: fresh again, no transition here,
	// and the next contact this hub handles is not a connect.
	f.Observe("stale", fleet.Session{LastSeen: c.Now(), AppliedRevision: 9})
	if s, _ := f.Get("stale"); f.State("stale") != api.NodeConnected || s.AppliedRevision != 9 {
		t.Fatalf("after Observe: %s %+v", f.State("stale"), s)
	}
	c.Advance(time.Second)
	if got := f.Seen("stale", fleet.Session{LastSeen: c.Now()}); got.Connected {
		t.Fatalf("contact after another hub's = %+v, want no connect", got)
	}
}
