package store

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/driver"
)

// openClean opens a store in dir, fails the test unless it opened cleanly,
// and closes it at the end of the test (closing twice is harmless).
func openClean(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, rec, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	if rec.Happened() {
		t.Fatalf("Open(%s): unexpected recovery %+v", dir, rec)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// txID is bbolt's id of the last committed write transaction.
func txID(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func mustPutWorkload(t *testing.T, s *Store, name, doc string) {
	t.Helper()
	if _, err := s.PutWorkload(name, []byte(doc)); err != nil {
		t.Fatalf("PutWorkload(%s): %v", name, err)
	}
}

func mustWorkloads(t *testing.T, s *Store) map[string][]byte {
	t.Helper()
	w, err := s.Workloads()
	if err != nil {
		t.Fatalf("Workloads: %v", err)
	}
	return w
}

func assertWorkloads(t *testing.T, s *Store, want map[string]string) {
	t.Helper()
	got := mustWorkloads(t, s)
	if len(got) != len(want) {
		t.Fatalf("Workloads: got %d %q, want %d %q", len(got), got, len(want), want)
	}
	for name, doc := range want {
		if string(got[name]) != doc {
			t.Errorf("Workloads[%s] = %q, want %q", name, got[name], doc)
		}
	}
}

func TestStore_Workloads_RoundTrip(t *testing.T) {
	s := openClean(t, t.TempDir(), Options{})

	changed, err := s.PutWorkload("web", []byte(`{"name":"web","replicas":1}`))
	if err != nil || !changed {
		t.Fatalf("PutWorkload(web) = %v, %v; want true, nil", changed, err)
	}
	mustPutWorkload(t, s, "db", `{"name":"db"}`)
	assertWorkloads(t, s, map[string]string{"web": `{"name":"web","replicas":1}`, "db": `{"name":"db"}`})

	changed, err = s.PutWorkload("web", []byte(`{"name":"web","replicas":2}`))
	if err != nil || !changed {
		t.Fatalf("PutWorkload(web, new doc) = %v, %v; want true, nil", changed, err)
	}
	assertWorkloads(t, s, map[string]string{"web": `{"name":"web","replicas":2}`, "db": `{"name":"db"}`})

	// The returned map is the caller's: scribbling on it changes nothing.
	w := mustWorkloads(t, s)
	w["web"][0] = 'X'
	delete(w, "db")
	assertWorkloads(t, s, map[string]string{"web": `{"name":"web","replicas":2}`, "db": `{"name":"db"}`})

	existed, err := s.DeleteWorkload("web")
	if err != nil || !existed {
		t.Fatalf("DeleteWorkload(web) = %v, %v; want true, nil", existed, err)
	}
	existed, err = s.DeleteWorkload("web")
	if err != nil || existed {
		t.Fatalf("DeleteWorkload(web) again = %v, %v; want false, nil", existed, err)
	}
	assertWorkloads(t, s, map[string]string{"db": `{"name":"db"}`})
}

func TestStore_PutWorkload_Invalid(t *testing.T) {
	s := openClean(t, t.TempDir(), Options{})
	for _, tc := range []struct{ name, doc string }{
		{"", `{}`},
		{"web", ``},
		{"web", `{"name":`},
	} {
		if _, err := s.PutWorkload(tc.name, []byte(tc.doc)); err == nil {
			t.Errorf("PutWorkload(%q, %q) succeeded, want error", tc.name, tc.doc)
		}
	}
	assertWorkloads(t, s, nil)
}

func TestStore_Instances_RoundTrip(t *testing.T) {
	s := openClean(t, t.TempDir(), Options{})

	if _, ok, err := s.Instance("web"); err != nil || ok {
		t.Fatalf("Instance(web) on empty store: ok=%v err=%v", ok, err)
	}
	start := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	web := Instance{
		Handle:    &driver.Handle{Driver: "exec", Version: 1, State: []byte(`{"pid":42}`)},
		Restarts:  3,
		StartedAt: start,
	}
	mustPutWorkload(t, s, "web", `{"name":"web"}`)
	if err := s.PutInstance("web", web); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInstance("idle", Instance{}); err != nil {
		t.Fatal(err)
	}

	got, ok, err := s.Instance("web")
	if err != nil || !ok {
		t.Fatalf("Instance(web): ok=%v err=%v", ok, err)
	}
	assertInstance(t, got, web)
	if got.StartedAt.Location() != time.UTC {
		t.Errorf("StartedAt location = %v, want UTC", got.StartedAt.Location())
	}

	all, err := s.Instances()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("Instances: got %d, want 2: %+v", len(all), all)
	}
	assertInstance(t, all["web"], web)
	assertInstance(t, all["idle"], Instance{})

	// Deleting the workload's document leaves its instance: the supervisor
	// removes that once the instance is gone.
	if _, err := s.DeleteWorkload("web"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Instance("web"); err != nil || !ok {
		t.Fatalf("Instance(web) after DeleteWorkload: ok=%v err=%v", ok, err)
	}
	for _, name := range []string{"web", "idle", "never-there"} {
		if err := s.DeleteInstance(name); err != nil {
			t.Fatal(err)
		}
	}
	if all, _ := s.Instances(); len(all) != 0 {
		t.Errorf("Instances after deletes = %+v, want none", all)
	}
}

func TestStore_Values(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	if v, err := s.Value("plan"); err != nil || v != nil {
		t.Fatalf("absent value = %q, %v", v, err)
	}
	if changed, err := s.PutDesired("plan", []byte(`{"revision":3}`)); err != nil || !changed {
		t.Fatalf("PutDesired = %v, %v", changed, err)
	}
	if changed, err := s.PutValue("plan", []byte(`{"revision":3}`)); err != nil || changed {
		t.Fatalf("unchanged PutValue = %v, %v", changed, err)
	}
	if _, err := s.PutValue("bad", []byte(`{`)); err == nil {
		t.Fatal("invalid JSON accepted")
	}
	if v, _ := s.Value("plan"); string(v) != `{"revision":3}` {
		t.Fatalf("Value = %q", v)
	}
	// Desired values are in the snapshot, so a corrupt store gives them back.
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "state.db"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, rec, err := Open(dir, Options{})
	if err != nil || !rec.Happened() {
		t.Fatalf("reopen: %v %+v", err, rec)
	}
	defer s2.Close()
	if v, _ := s2.Value("plan"); string(v) != `{"revision":3}` {
		t.Fatalf("after recovery Value = %q", v)
	}
}

func assertInstance(t *testing.T, got, want Instance) {
	t.Helper()
	if got.Restarts != want.Restarts || !got.StartedAt.Equal(want.StartedAt) {
		t.Errorf("instance = %+v, want %+v", got, want)
	}
	switch {
	case (got.Handle == nil) != (want.Handle == nil):
		t.Errorf("handle = %+v, want %+v", got.Handle, want.Handle)
	case got.Handle != nil && (got.Handle.Driver != want.Handle.Driver ||
		got.Handle.Version != want.Handle.Version || !bytes.Equal(got.Handle.State, want.Handle.State)):
		t.Errorf("handle = %+v, want %+v", *got.Handle, *want.Handle)
	}
}

func TestStore_UnchangedPutsDoNotWrite(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	mustPutWorkload(t, s, "web", `{"name":"web"}`)
	in := Instance{Restarts: 1, StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := s.PutInstance("web", in); err != nil {
		t.Fatal(err)
	}
	snap, err := os.Stat(filepath.Join(dir, goodName))
	if err != nil {
		t.Fatal(err)
	}

	id, writes := txID(t, s), s.writes.Load()
	changed, err := s.PutWorkload("web", []byte(`{"name":"web"}`))
	if err != nil || changed {
		t.Fatalf("PutWorkload(same doc) = %v, %v; want false, nil", changed, err)
	}
	// The same instant in another zone encodes the same, since StartedAt
	// is stored in UTC.
	in.StartedAt = in.StartedAt.In(time.FixedZone("X", -7200))
	if err := s.PutInstance("web", in); err != nil {
		t.Fatal(err)
	}
	if existed, err := s.DeleteWorkload("nope"); err != nil || existed {
		t.Fatalf("DeleteWorkload(nope) = %v, %v", existed, err)
	}
	if got := txID(t, s); got != id {
		t.Errorf("tx id went from %d to %d on unchanged puts", id, got)
	}
	if got := s.writes.Load(); got != writes {
		t.Errorf("write count went from %d to %d on unchanged puts", writes, got)
	}
	after, err := os.Stat(filepath.Join(dir, goodName))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(snap, after) {
		t.Errorf("snapshot was rewritten by an unchanged put")
	}

	// A real change does write, so the counters above can move.
	in.Restarts++
	if err := s.PutInstance("web", in); err != nil {
		t.Fatal(err)
	}
	if got := txID(t, s); got != id+1 {
		t.Errorf("tx id after a real change = %d, want %d", got, id+1)
	}
}

func TestStore_Events_RoundTrip(t *testing.T) {
	s := openClean(t, t.TempDir(), Options{})
	t0 := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	var appended []Event
	for i := range 5 {
		e, err := s.AppendEvent(Event{
			Time:     t0.Add(time.Duration(i) * time.Second),
			Workload: "web",
			Type:     "started",
			Message:  fmt.Sprintf("start %d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d: Seq = %d, want %d", i, e.Seq, i+1)
		}
		if want := s.epoch + "-" + fmt.Sprint(e.Seq); e.ID != want || len(s.epoch) != 16 {
			t.Errorf("event %d: ID = %q, want %q (16 hex + seq)", i, e.ID, want)
		}
		appended = append(appended, e)
	}

	all, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("Events(0, 0): got %d events, want 5", len(all))
	}
	for i, e := range all {
		w := appended[i]
		if e.Seq != w.Seq || e.ID != w.ID || !e.Time.Equal(w.Time) || e.Workload != w.Workload ||
			e.Type != w.Type || e.Message != w.Message {
			t.Errorf("Events[%d] = %+v, want %+v", i, e, w)
		}
	}

	page, err := s.Events(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 4 {
		t.Errorf("Events(2, 2) = %+v, want seqs 3, 4", page)
	}
	if tail, _ := s.Events(5, 0); len(tail) != 0 {
		t.Errorf("Events(5, 0) = %+v, want none", tail)
	}
	if tail, _ := s.Events(^uint64(0), 0); len(tail) != 0 {
		t.Errorf("Events(max, 0) = %+v, want none", tail)
	}

	if _, err := s.AppendEvent(Event{Message: "no type"}); err == nil {
		t.Error("AppendEvent without Type succeeded")
	}
}

// testClock is a clock stuck at one instant.
type testClock struct{ t time.Time }

func (c testClock) Now() time.Time { return c.t }

func (testClock) NewTimer(time.Duration) clock.Timer { panic("store uses no timers") }

func TestStore_AppendEvent_StampsTimeFromClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("Y", 3600))
	s := openClean(t, t.TempDir(), Options{Clock: testClock{now}})
	e, err := s.AppendEvent(Event{Type: "adopted"})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(now) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", e.Time, now)
	}
}

func TestStore_Events_RetentionDropsOldest(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{EventRetention: 3})
	for i := range 7 {
		if _, err := s.AppendEvent(Event{Type: "exited", Message: fmt.Sprint(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	assertEventSeqs(t, s, 5, 6, 7)

	// A smaller retention after a restart trims on the next append.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClean(t, dir, Options{EventRetention: 2})
	assertEventSeqs(t, s, 5, 6, 7)
	if _, err := s.AppendEvent(Event{Type: "exited"}); err != nil {
		t.Fatal(err)
	}
	assertEventSeqs(t, s, 7, 8)
}

func assertEventSeqs(t *testing.T, s *Store, want ...uint64) {
	t.Helper()
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, e := range evs {
		got = append(got, e.Seq)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event seqs = %v, want %v", got, want)
	}
}

func TestStore_Reopen_KeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	mustPutWorkload(t, s, "web", `{"name":"web"}`)
	if err := s.PutInstance("web", Instance{Restarts: 2}); err != nil {
		t.Fatal(err)
	}
	first, err := s.AppendEvent(Event{Type: "started", Workload: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openClean(t, dir, Options{})
	assertWorkloads(t, s, map[string]string{"web": `{"name":"web"}`})
	if in, ok, err := s.Instance("web"); err != nil || !ok || in.Restarts != 2 {
		t.Errorf("Instance(web) = %+v, %v, %v", in, ok, err)
	}
	second, err := s.AppendEvent(Event{Type: "exited", Workload: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Seq != first.Seq+1 {
		t.Errorf("seq after reopen = %d, want %d", second.Seq, first.Seq+1)
	}
	if !strings.HasPrefix(second.ID, strings.TrimSuffix(first.ID, "1")) {
		t.Errorf("epoch changed across a clean reopen: %s then %s", first.ID, second.ID)
	}
}

func TestStore_Snapshot_FollowsDesiredState(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	// A clean Open of a new store writes the first snapshot.
	assertSnapshotWorkloads(t, dir, nil)

	mustPutWorkload(t, s, "web", `{"name":"web"}`)
	assertSnapshotWorkloads(t, dir, map[string]string{"web": `{"name":"web"}`})
	mustPutWorkload(t, s, "db", `{"name":"db"}`)
	if _, err := s.DeleteWorkload("web"); err != nil {
		t.Fatal(err)
	}
	assertSnapshotWorkloads(t, dir, map[string]string{"db": `{"name":"db"}`})

	// A stale snapshot (say the agent died between commit and snapshot) is
	// brought up to date by the next Open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, goodName)); err != nil {
		t.Fatal(err)
	}
	stale := openClean(t, t.TempDir(), Options{})
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(stale.dir, goodName), filepath.Join(dir, goodName)); err != nil {
		t.Fatal(err)
	}
	assertSnapshotWorkloads(t, dir, nil)
	openClean(t, dir, Options{})
	assertSnapshotWorkloads(t, dir, map[string]string{"db": `{"name":"db"}`})
}

// assertSnapshotWorkloads reads the workloads out of DIR/state.db.good.
func assertSnapshotWorkloads(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	db, c, err := openChecked(filepath.Join(dir, goodName), true)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer db.Close()
	got := make(map[string]string)
	for k, v := range c.workloads {
		got[k] = string(v)
	}
	if want == nil {
		want = map[string]string{}
	}
	if !maps.Equal(got, want) {
		t.Errorf("snapshot workloads = %q, want %q", got, want)
	}
}

func TestStore_ConcurrentPuts_SnapshotHasAll(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	want := make(map[string]string)
	var wg sync.WaitGroup
	for i := range 8 {
		name := fmt.Sprintf("w%d", i)
		doc := fmt.Sprintf(`{"n":%d}`, i)
		want[name] = doc
		wg.Go(func() {
			if _, err := s.PutWorkload(name, []byte(doc)); err != nil {
				t.Error(err)
			}
			if _, err := s.AppendEvent(Event{Type: "started", Workload: name}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	assertWorkloads(t, s, want)
	assertSnapshotWorkloads(t, dir, want)
	assertEventSeqs(t, s, 1, 2, 3, 4, 5, 6, 7, 8)
}

func TestOpen_RemovesTempFiles(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, tempPrefix+"123")
	if err := os.WriteFile(tmp, []byte("half a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	openClean(t, dir, Options{})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temp file still there after Open: %v", err)
	}
}

func TestStore_Events_DropsOfUndeliveredEventsAreCountedAndReported(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{EventRetention: 3})
	appendN := func(n int) {
		t.Helper()
		for range n {
			if _, err := s.AppendEvent(Event{Type: "exited"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(2)
	// The hub acknowledged 1 and 2: dropping them loses nothing.
	if err := s.SetEventCursor(2); err != nil {
		t.Fatal(err)
	}
	appendN(3) // 1 and 2 go
	if _, ok, err := s.ReportDroppedEvents(); err != nil || ok {
		t.Fatalf("report after dropping acknowledged events: ok=%v, %v; want nothing to report", ok, err)
	}
	// A long outage: 3..9 are never acknowledged, 3..6 are dropped.
	appendN(4)
	assertEventSeqs(t, s, 7, 8, 9)
	if n, err := s.DroppedEvents(); err != nil || n != 4 {
		t.Fatalf("DroppedEvents = %d, %v; want 4", n, err)
	}

	// The count survives a restart of the agent.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClean(t, dir, Options{EventRetention: 3})
	if c, err := s.EventCursor(); err != nil || c != 2 {
		t.Fatalf("EventCursor after reopen = %d, %v; want 2", c, err)
	}
	e, ok, err := s.ReportDroppedEvents()
	if err != nil || !ok {
		t.Fatalf("ReportDroppedEvents: ok=%v, %v", ok, err)
	}
	if e.Type != EventDropped || !strings.HasPrefix(e.Message, "4 events the hub had not received were dropped") {
		t.Errorf("report = %s: %q", e.Type, e.Message)
	}
	// The report is not trimmed: it pushes out no undelivered event.
	assertEventSeqs(t, s, 7, 8, 9, 10)
	if n, _ := s.DroppedEvents(); n != 4 {
		t.Errorf("DroppedEvents = %d, want 4", n)
	}
	if _, ok, _ := s.ReportDroppedEvents(); ok {
		t.Error("a second report with nothing dropped since the first")
	}
	// The hub acknowledges everything: dropping acknowledged events adds
	// nothing to report.
	if err := s.SetEventCursor(10); err != nil {
		t.Fatal(err)
	}
	appendN(3)
	assertEventSeqs(t, s, 11, 12, 13)
	if _, ok, _ := s.ReportDroppedEvents(); ok {
		t.Error("a report after dropping only acknowledged events")
	}
}
