package store

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"atoll.dev/atoll/internal/driver"
)

var update = flag.Bool("update", false, "rewrite testdata/state-v1.db")

// frozenV1 is testdata/state-v1.db: a schema-1 database written once by
// writeFrozenV1 and kept so that later schema versions can prove they still
// read it. Never regenerate it after schema 2 exists.
const frozenV1 = "testdata/state-v1.db"

var (
	v1Workloads = map[string]string{
		"web":    `{"name":"web","runtime":"exec","command":["/usr/bin/web","--port","8080"]}`,
		"sensor": `{"name":"sensor","runtime":"wasm","module":"sensor.wasm"}`,
	}
	v1Started = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	v1Web     = Instance{
		Handle:    &driver.Handle{Driver: "exec", Version: 1, State: []byte(`{"pid":4242,"startTime":123456}`)},
		Restarts:  2,
		StartedAt: v1Started,
	}
	v1Events = []Event{
		{Time: v1Started, Workload: "web", Type: "started", Message: "pid 4242"},
		{Time: v1Started.Add(time.Minute), Workload: "sensor", Type: "exited", Message: "exit code 1"},
		{Time: v1Started.Add(2 * time.Minute), Type: "store-recovered", Message: "state.db: invalid database"},
	}
)

// writeFrozenV1 builds the frozen database with the current code. It only
// runs under -update.
func writeFrozenV1(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	for name, doc := range v1Workloads {
		mustPutWorkload(t, s, name, doc)
	}
	if err := s.PutInstance("web", v1Web); err != nil {
		t.Fatal(err)
	}
	for _, e := range v1Events {
		if _, err := s.AppendEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dir, dbName), frozenV1)
	t.Logf("wrote %s", frozenV1)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpen_FrozenV1(t *testing.T) {
	if *update {
		writeFrozenV1(t)
	}
	dir := t.TempDir()
	copyFile(t, frozenV1, filepath.Join(dir, dbName))
	s := openClean(t, dir, Options{})

	assertWorkloads(t, s, v1Workloads)
	in, ok, err := s.Instance("web")
	if err != nil || !ok {
		t.Fatalf("Instance(web): ok=%v err=%v", ok, err)
	}
	assertInstance(t, in, v1Web)
	if _, ok, _ := s.Instance("sensor"); ok {
		t.Error("Instance(sensor) exists, want none")
	}

	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(v1Events) {
		t.Fatalf("%d events, want %d", len(evs), len(v1Events))
	}
	idRE := regexp.MustCompile(`^[0-9a-f]{16}-[0-9]+$`)
	for i, e := range evs {
		w := v1Events[i]
		if e.Seq != uint64(i+1) || !idRE.MatchString(e.ID) || !e.Time.Equal(w.Time) ||
			e.Workload != w.Workload || e.Type != w.Type || e.Message != w.Message {
			t.Errorf("event %d = %+v, want seq %d and %+v", i, e, i+1, w)
		}
	}

	// The frozen file keeps working: the sequence continues.
	e, err := s.AppendEvent(Event{Type: "adopted", Workload: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != uint64(len(v1Events)+1) {
		t.Errorf("next seq = %d, want %d", e.Seq, len(v1Events)+1)
	}
}
