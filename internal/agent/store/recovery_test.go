package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// seeded is the desired state seedStore leaves behind. The documents are
// large enough that the workloads bucket gets a page of its own instead of
// being inlined into its parent.
var seeded = map[string]string{
	"web":    `{"name":"web","pad":"` + strings.Repeat("w", 700) + `"}`,
	"sensor": `{"name":"sensor","pad":"` + strings.Repeat("s", 700) + `"}`,
}

// seedStore creates a store in dir holding seeded plus an instance and some
// events written after the last desired-state change, and closes it.
func seedStore(t *testing.T, dir string) {
	t.Helper()
	s := openClean(t, dir, Options{})
	mustPutWorkload(t, s, "old", `{"name":"old"}`)
	for name, doc := range seeded {
		mustPutWorkload(t, s, name, doc)
	}
	if _, err := s.DeleteWorkload("old"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInstance("web", Instance{Restarts: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.AppendEvent(Event{Type: "started", Workload: "web"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// workloadsPageOffset returns the file offset of the page holding the
// workloads bucket's records.
func workloadsPageOffset(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var off int64
	err = db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketWorkloads).Root()
		if root == 0 {
			return errors.New("workloads bucket is inline; make the seed documents bigger")
		}
		off = int64(root) * int64(db.Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// usedSize returns how many bytes of the file at path bbolt's pages take.
func usedSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func garbage(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func overwriteAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

var damages = []struct {
	name   string
	damage func(t *testing.T, path string)
}{
	{"RandomBytes", func(t *testing.T, path string) {
		if err := os.WriteFile(path, garbage(1, int(fileSize(t, path))), 0o600); err != nil {
			t.Fatal(err)
		}
	}},
	{"TruncatedToHalf", func(t *testing.T, path string) {
		// Half of the pages in use: bbolt preallocates beyond them, and
		// cutting off only that would lose nothing (see
		// TestOpen_TruncatedPreallocation_IsNotCorruption).
		if err := os.Truncate(path, usedSize(t, path)/2); err != nil {
			t.Fatal(err)
		}
	}},
	{"GarbageOnWorkloadsPage", func(t *testing.T, path string) {
		off := workloadsPageOffset(t, path)
		overwriteAt(t, path, off, garbage(2, os.Getpagesize()))
	}},
	{"GarbageFromPage3On", func(t *testing.T, path string) {
		off := 3 * int64(os.Getpagesize())
		overwriteAt(t, path, off, garbage(3, int(fileSize(t, path)-off)))
	}},
	{"ZeroLength", func(t *testing.T, path string) {
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	}},
}

func TestOpen_Corrupt_RestoresSnapshot(t *testing.T) {
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, dbName)
			seedStore(t, dir)
			tc.damage(t, path)
			damaged, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			s, rec, err := Open(dir, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			t.Logf("recovery: %+v", rec)
			if !rec.Happened() || !strings.HasPrefix(rec.Reason, dbName+": ") {
				t.Errorf("Reason = %q, want it to start with %q", rec.Reason, dbName+": ")
			}
			if rec.RestoredFrom != filepath.Join(dir, goodName) || rec.SnapshotAt.IsZero() {
				t.Errorf("RestoredFrom = %q at %v, want %s at a real time", rec.RestoredFrom, rec.SnapshotAt, goodName)
			}
			if !strings.HasPrefix(filepath.Base(rec.MovedTo), dbName+".corrupt-") {
				t.Errorf("MovedTo = %q, want %s.corrupt-<nanos>", rec.MovedTo, dbName)
			}
			if moved, err := os.ReadFile(rec.MovedTo); err != nil || !bytes.Equal(moved, damaged) {
				t.Errorf("corrupt file not kept verbatim at %s: %v", rec.MovedTo, err)
			}
			assertWorkloads(t, s, seeded)

			// The restored store works and hands out IDs of a new epoch.
			e, err := s.AppendEvent(Event{Type: "store-recovered", Message: rec.Reason})
			if err != nil {
				t.Fatal(err)
			}
			evs, err := s.Events(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, old := range evs[:len(evs)-1] {
				if old.ID == e.ID || strings.HasPrefix(e.ID, strings.Split(old.ID, "-")[0]) {
					t.Errorf("event after recovery %s shares the epoch of %s", e.ID, old.ID)
				}
			}
			mustPutWorkload(t, s, "new", `{"name":"new"}`)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			// The next Open is clean and sees everything.
			s = openClean(t, dir, Options{})
			want := map[string]string{"new": `{"name":"new"}`}
			for k, v := range seeded {
				want[k] = v
			}
			assertWorkloads(t, s, want)
		})
	}
}

func TestOpen_Corrupt_SnapshotCorruptToo_StartsEmpty(t *testing.T) {
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			seedStore(t, dir)
			tc.damage(t, filepath.Join(dir, dbName))
			tc.damage(t, filepath.Join(dir, goodName))

			s, rec, err := Open(dir, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			t.Logf("recovery: %+v", rec)
			if !strings.Contains(rec.Reason, "snapshot "+goodName+": ") || !strings.HasSuffix(rec.Reason, "starting empty") {
				t.Errorf("Reason = %q, want it to name the bad snapshot and say the store starts empty", rec.Reason)
			}
			if rec.RestoredFrom != "" || !rec.SnapshotAt.IsZero() {
				t.Errorf("RestoredFrom = %q at %v, want none", rec.RestoredFrom, rec.SnapshotAt)
			}
			assertWorkloads(t, s, nil)
			if evs, err := s.Events(0, 0); err != nil || len(evs) != 0 {
				t.Errorf("Events = %v, %v; want none", evs, err)
			}
			matches, _ := filepath.Glob(filepath.Join(dir, goodName+".corrupt-*"))
			if len(matches) != 1 {
				t.Errorf("corrupt snapshot moved aside: found %q, want one file", matches)
			}
			// A fresh snapshot of the (empty) store replaces the bad one.
			assertSnapshotWorkloads(t, dir, nil)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			openClean(t, dir, Options{})
		})
	}
}

func TestOpen_TruncatedPreallocation_IsNotCorruption(t *testing.T) {
	dir := t.TempDir()
	seedStore(t, dir)
	path := filepath.Join(dir, dbName)
	used := usedSize(t, path)
	if fileSize(t, path) <= used {
		t.Fatalf("file is %d bytes, no more than its %d used: nothing to cut", fileSize(t, path), used)
	}
	if err := os.Truncate(path, used); err != nil {
		t.Fatal(err)
	}
	s := openClean(t, dir, Options{})
	assertWorkloads(t, s, seeded)
}

func TestOpen_Corrupt_NoSnapshot_StartsEmpty(t *testing.T) {
	dir := t.TempDir()
	seedStore(t, dir)
	if err := os.Remove(filepath.Join(dir, goodName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dbName), garbage(4, 16384), 0o600); err != nil {
		t.Fatal(err)
	}
	s, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := dbName + ": invalid database; no snapshot: starting empty"; rec.Reason != want {
		t.Errorf("Reason = %q, want %q", rec.Reason, want)
	}
	if rec.MovedTo == "" || rec.RestoredFrom != "" {
		t.Errorf("recovery = %+v, want a MovedTo and no RestoredFrom", rec)
	}
	assertWorkloads(t, s, nil)
}

func TestOpen_Missing_RestoresSnapshot(t *testing.T) {
	dir := t.TempDir()
	seedStore(t, dir)
	if err := os.Remove(filepath.Join(dir, dbName)); err != nil {
		t.Fatal(err)
	}
	s, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !rec.Happened() || rec.MovedTo != "" || rec.RestoredFrom == "" {
		t.Errorf("recovery = %+v, want a restore with nothing moved", rec)
	}
	assertWorkloads(t, s, seeded)
}

func TestOpen_UndecodableRecord_IsCorruption(t *testing.T) {
	dir := t.TempDir()
	seedStore(t, dir)
	// A record bbolt is happy with but the store cannot decode.
	db, err := bolt.Open(filepath.Join(dir, dbName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstances).Put([]byte("web"), []byte(`{"restarts":"many"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(rec.Reason, "bucket instances: record \"web\"") || rec.RestoredFrom == "" {
		t.Errorf("recovery = %+v, want the bad instance named and the snapshot restored", rec)
	}
	assertWorkloads(t, s, seeded)
	// The snapshot was taken at the last change of desired state, before
	// the instance was first written.
	if in, ok, err := s.Instance("web"); err != nil || ok {
		t.Errorf("Instance(web) = %+v, %v, %v; want none, as in the snapshot", in, ok, err)
	}
}

func TestOpen_Locked(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{})
	mustPutWorkload(t, s, "web", `{}`)

	_, _, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if want := "state.db is locked: is another agent running on " + dir + "?"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// The first store is untouched by the attempt.
	assertWorkloads(t, s, map[string]string{"web": `{}`})
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.corrupt-*")); len(matches) != 0 {
		t.Errorf("locked Open moved files aside: %q", matches)
	}
}

func TestOpen_NewerSchema(t *testing.T) {
	dir := t.TempDir()
	seedStore(t, dir)
	path := filepath.Join(dir, dbName)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)

	_, rec, err := Open(dir, Options{})
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open: err = %v, want ErrNewerSchema", err)
	}
	if !strings.Contains(err.Error(), "schema version 2, this agent supports 1") {
		t.Errorf("error %q does not give both versions", err)
	}
	if rec.Happened() {
		t.Errorf("recovery = %+v, want none", rec)
	}
	if after := snapshotDir(t, dir); !dirEqual(before, after) {
		t.Errorf("Open changed the directory: before %v, after %v", names(before), names(after))
	}
}

// snapshotDir reads every file in dir.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func dirEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func names(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestOpen_UnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(file, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "open store "+file+": ") {
		t.Errorf("Open on a file: err = %v, want an open store error", err)
	}
}

// TestOpen_RandomDamage never sees Open fail or crash on a damaged file: it
// either recovers or finds the damage harmless to bbolt (a flipped byte
// inside a document that is still valid JSON cannot be told from an edit),
// and the store it returns takes writes and reopens cleanly.
func TestOpen_RandomDamage(t *testing.T) {
	base := t.TempDir()
	seedStore(t, base)
	orig, err := os.ReadFile(filepath.Join(base, dbName))
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(base, goodName))
	if err != nil {
		t.Fatal(err)
	}
	used := int(usedSize(t, filepath.Join(base, dbName)))
	ps := os.Getpagesize()
	runs := uint64(300)
	if testing.Short() {
		runs = 60
	}
	recovered := 0
	for seed := range runs {
		r := rand.New(rand.NewPCG(seed, 7))
		b := bytes.Clone(orig)
		switch seed % 3 {
		case 0: // one data page of garbage
			p := 2 + r.IntN(used/ps-2)
			copy(b[p*ps:], garbage(seed, ps))
		case 1: // a few flipped bytes anywhere, meta pages included
			for range 1 + r.IntN(8) {
				b[r.IntN(used)] ^= byte(1 + r.IntN(255))
			}
		case 2: // a short run of garbage
			off := 2*ps + r.IntN(used-2*ps)
			copy(b[off:], garbage(seed, 1+r.IntN(200)))
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, dbName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, goodName), good, 0o600); err != nil {
			t.Fatal(err)
		}

		s, rec, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("seed %d: Open: %v", seed, err)
		}
		if rec.Happened() {
			recovered++
			assertWorkloads(t, s, seeded)
		}
		if _, err := s.Events(0, 0); err != nil {
			t.Errorf("seed %d: Events: %v", seed, err)
		}
		if _, err := s.Instances(); err != nil {
			t.Errorf("seed %d: Instances: %v", seed, err)
		}
		if _, err := s.AppendEvent(Event{Type: "started"}); err != nil {
			t.Errorf("seed %d: AppendEvent: %v", seed, err)
		}
		if _, err := s.PutWorkload("new", []byte(`{"name":"new"}`)); err != nil {
			t.Errorf("seed %d: PutWorkload: %v", seed, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, rec, err = Open(dir, Options{})
		if err != nil || rec.Happened() {
			t.Fatalf("seed %d: reopen: %+v, %v; want clean", seed, rec, err)
		}
		_ = s.Close()
	}
	// Most damage lands in free space or inside documents; a good share
	// must still be caught, or the check is not looking.
	if recovered < int(runs)/8 {
		t.Errorf("recovered %d of %d damaged files, want at least %d", recovered, runs, runs/8)
	}
	t.Logf("recovered %d of %d", recovered, runs)
}

// TestCheckPages_BusyDatabase guards against false alarms: a file that has
// been through many writes, frees, overflow pages and branch pages passes.
func TestCheckPages_BusyDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openClean(t, dir, Options{EventRetention: 1000})
	big := `{"pad":"` + strings.Repeat("x", 3*os.Getpagesize()) + `"}` // overflow pages
	for i := range 2000 {
		if _, err := s.AppendEvent(Event{Type: "started", Message: strings.Repeat("m", i%300)}); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			mustPutWorkload(t, s, "big", big[:len(big)-2-i%50]+`"}`)
			mustPutWorkload(t, s, "w"+strings.Repeat("x", i%7), `{}`)
			if _, err := s.DeleteWorkload("w" + strings.Repeat("x", (i+3)%7)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClean(t, dir, Options{EventRetention: 1000})
	assertEventCount(t, s, 1000)
	data, err := os.ReadFile(filepath.Join(dir, dbName))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPages(data, os.Getpagesize()); err != nil {
		t.Errorf("checkPages on a healthy file: %v", err)
	}
}

func assertEventCount(t *testing.T, s *Store, want int) {
	t.Helper()
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != want {
		t.Errorf("%d events, want %d", len(evs), want)
	}
}
