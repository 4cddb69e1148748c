package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	dbName     = "state.db"
	goodName   = "state.db.good"
	tempPrefix = ".state.db.tmp-"

	// lockTimeout bounds the wait for another process's lock on state.db.
	lockTimeout = time.Second
)

// Recovery describes what Open did about a corrupt state.db. It is the zero
// value when the store opened cleanly.
type Recovery struct {
	// Reason says what was wrong, e.g. "state.db: invalid database", and
	// what Open did about the snapshot when it could not use it.
	Reason string
	// MovedTo is where the corrupt file went; "" when there was no file.
	MovedTo string
	// RestoredFrom is the snapshot the store was restored from; "" when no
	// usable snapshot existed and the store started empty.
	RestoredFrom string
	// SnapshotAt is when that snapshot was written.
	SnapshotAt time.Time
}

// Happened reports whether Open had to recover.
func (r Recovery) Happened() bool { return r.Reason != "" }

// Open opens or creates DIR/state.db, creating DIR if needed.
//
// A corrupt state.db (bbolt refuses it, a page is garbage, a record does not
// decode, reading it faults or panics) is not an error: Open moves it aside
// to state.db.corrupt-<unix-nanos>, restores the last good snapshot
// state.db.good (verified the same way first) or, failing that, starts
// empty, and describes all this in the returned Recovery. A missing state.db
// next to an existing snapshot is restored the same way.
//
// Open fails when DIR is unusable, when another process holds state.db
// (ErrLocked, after waiting one second) and when state.db has a newer schema
// version (ErrNewerSchema; the file is left untouched).
func Open(dir string, opts Options) (*Store, Recovery, error) {
	s := &Store{dir: dir, opts: opts.withDefaults()}
	rec, err := s.open()
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("open store %s: %w", dir, err)
	}
	return s, rec, nil
}

func (s *Store) open() (Recovery, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return Recovery{}, err
	}
	path := filepath.Join(s.dir, dbName)
	goodPath := filepath.Join(s.dir, goodName)

	var rec Recovery
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(goodPath); err == nil {
			rec.Reason = dbName + ": missing, but a snapshot exists"
		}
	case err != nil:
		return Recovery{}, err
	}

	var c content
	if !rec.Happened() {
		s.db, c, err = openChecked(path, false)
		switch {
		case err == nil:
		case isCorrupt(err):
			rec.Reason = dbName + ": " + err.Error()
		default:
			return Recovery{}, s.openError(err)
		}
	}
	if rec.Happened() {
		if c, err = s.salvage(&rec); err != nil {
			return Recovery{}, err
		}
	}

	if s.epoch, err = prepare(s.db, c, rec.Happened()); err != nil {
		_ = s.db.Close()
		return Recovery{}, fmt.Errorf("initialise %s: %w", dbName, err)
	}
	// Only now, holding the lock on state.db, is it safe to remove what an
	// interrupted write left behind.
	removeTemps(s.dir)
	s.ensureSnapshot(c.workloads)
	return rec, nil
}

// openError turns an error from openChecked that is not corruption into the
// error Open returns.
func (s *Store) openError(err error) error {
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("%w: is another agent running on %s?", err, s.dir)
	}
	return err
}

// salvage moves the corrupt state.db aside, puts the snapshot in its place
// if it is good, and opens the result. It fills in rec as it goes.
func (s *Store) salvage(rec *Recovery) (content, error) {
	path := filepath.Join(s.dir, dbName)
	goodPath := filepath.Join(s.dir, goodName)
	now := s.opts.Clock.Now()

	if _, err := os.Lstat(path); err == nil {
		moved, err := moveAside(path, now)
		if err != nil {
			return content{}, err
		}
		rec.MovedTo = moved
	}

	fi, err := os.Stat(goodPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rec.Reason += "; no snapshot: starting empty"
	case err != nil:
		return content{}, err
	default:
		problem, err := restoreSnapshot(s.dir, goodPath, path)
		if err != nil {
			return content{}, s.openError(err)
		}
		if problem != "" {
			rec.Reason += "; " + problem + ": starting empty"
			if _, err := moveAside(goodPath, now); err != nil {
				return content{}, err
			}
		} else {
			rec.RestoredFrom = goodPath
			rec.SnapshotAt = fi.ModTime()
		}
	}

	db, c, err := openChecked(path, false)
	if isCorrupt(err) {
		// The copy of a verified snapshot went bad on the way; give up on
		// it rather than loop.
		rec.Reason += "; restored " + dbName + ": " + err.Error() + ": starting empty"
		rec.RestoredFrom, rec.SnapshotAt = "", time.Time{}
		if _, err := moveAside(path, now); err != nil {
			return content{}, err
		}
		db, c, err = openChecked(path, false)
	}
	if err != nil {
		return content{}, s.openError(err)
	}
	s.db = db
	return c, nil
}

// restoreSnapshot verifies the snapshot at goodPath and, if it is good,
// copies it to path atomically. problem describes a bad snapshot; err is for
// everything else.
func restoreSnapshot(dir, goodPath, path string) (problem string, err error) {
	db, _, err := openChecked(goodPath, true)
	if isCorrupt(err) {
		return "snapshot " + goodName + ": " + err.Error(), nil
	}
	if err != nil {
		return "", err
	}
	if err := db.Close(); err != nil {
		return "", err
	}
	src, err := os.Open(goodPath)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return "", writeAtomic(dir, filepath.Base(path), func(f *os.File) error {
		_, err := io.Copy(f, src)
		return err
	})
}

// ensureSnapshot makes state.db.good hold the current desired state: it
// writes one when none exists, when it does not verify or when its workloads
// differ from want. A failure is remembered and retried by the next change
// rather than failing Open, since the live file is fine.
func (s *Store) ensureSnapshot(want map[string][]byte) {
	db, c, err := openChecked(filepath.Join(s.dir, goodName), true)
	if err == nil {
		_ = db.Close()
		if maps.EqualFunc(c.workloads, want, bytes.Equal) {
			return
		}
	}
	_ = s.writeSnapshot()
}

// writeSnapshot writes a consistent copy of the database to state.db.good.
func (s *Store) writeSnapshot() error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		return writeAtomic(s.dir, goodName, func(f *os.File) error {
			_, err := tx.WriteTo(f)
			return err
		})
	})
	s.snapDirty = err != nil
	if err != nil {
		return fmt.Errorf("write snapshot %s: %w", filepath.Join(s.dir, goodName), err)
	}
	return nil
}

// retrySnapshot rewrites the snapshot if the last attempt failed.
func (s *Store) retrySnapshot() error {
	s.snapMu.Lock()
	dirty := s.snapDirty
	s.snapMu.Unlock()
	if !dirty {
		return nil
	}
	return s.writeSnapshot()
}

// prepare creates the buckets and meta records of a database that has none,
// and renews the epoch after a recovery. It returns the epoch to use.
func prepare(db *bolt.DB, c content, recovered bool) (string, error) {
	if !c.empty && !recovered {
		return c.epoch, nil
	}
	epoch := newEpoch()
	err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketWorkloads, bucketInstances, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v, _ := json.Marshal(epoch)
		if err := meta.Put(keyEpoch, v); err != nil {
			return err
		}
		if !c.empty {
			return nil
		}
		return meta.Put(keyVersion, []byte(fmt.Sprint(SchemaVersion)))
	})
	return epoch, err
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails; see crypto/rand.Read
	return hex.EncodeToString(b[:])
}

// corruptError marks a problem with a file's contents, as opposed to one
// with the directory, the lock or the schema version.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

func corruptf(format string, args ...any) error {
	return &corruptError{fmt.Errorf(format, args...)}
}

func isCorrupt(err error) bool {
	var c *corruptError
	return errors.As(err, &c)
}

// content is what a full read of a database found.
type content struct {
	// empty means the file has no buckets at all: bbolt created it but the
	// store never initialised it (or a crash came in between).
	empty     bool
	version   int
	epoch     string
	workloads map[string][]byte
}

// openChecked opens path with bbolt after checking it through, and returns
// the database read-only or read-write as asked. A missing path is created
// when read-write.
//
// The check runs under a read-only open, whose shared lock keeps writers out
// (and makes a running agent's exclusive lock show as ErrLocked) before
// bbolt parses more than the meta pages: the file must be as long as its
// pages, pass checkPages (the store's tx.Check), and every record must decode
// (readAll). Only then is a read-write database opened, whose open loads the
// freelist. Anything that means the file is damaged — bbolt refusing it, a
// check failing, a memory fault or a panic on the way — comes back as a
// *corruptError.
func openChecked(path string, readOnly bool) (db *bolt.DB, c content, err error) {
	// Faults on mmapped pages become panics on this goroutine, which the
	// next deferred function recovers. (Deferred calls run last in, first
	// out, so the flag is restored after the recovery.)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				closeQuietly(db)
			}
			db, c, err = nil, content{}, corruptf("panic while reading: %v", p)
		}
	}()

	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !readOnly:
		// A new database; bbolt writes its first pages itself.
		if db, err = openBolt(path, false); err != nil {
			return nil, content{}, err
		}
		return db, content{empty: true, workloads: map[string][]byte{}}, nil
	case err != nil:
		return nil, content{}, err
	case fi.Size() == 0:
		// bbolt would initialise it as a new database; for the store it
		// is a file that lost its contents.
		return nil, content{}, corruptf("empty file")
	}

	if db, err = openBolt(path, true); err != nil {
		return nil, content{}, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		// bbolt grows the file before it writes beyond its end, and
		// tx.WriteTo writes exactly tx.Size() bytes, so a shorter file
		// was cut off.
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		data := make([]byte, tx.Size())
		if n, err := f.ReadAt(data, 0); err == io.EOF {
			return corruptf("truncated: file is %d bytes, its pages need %d", n, len(data))
		} else if err != nil {
			return err
		}
		if err := checkPages(data, db.Info().PageSize); err != nil {
			return &corruptError{err}
		}
		c, err = readAll(tx)
		return err
	})
	if err == nil && !readOnly {
		err = db.Close()
		db = nil
		if err == nil {
			db, err = openBolt(path, false)
		}
	}
	if err != nil {
		if db != nil {
			closeQuietly(db)
		}
		return nil, content{}, err
	}
	return db, c, nil
}

// openBolt opens path with bbolt, waiting at most lockTimeout for its lock,
// and sorts the errors: ErrLocked, a *fs.PathError for an unusable file, a
// *corruptError for everything bbolt refuses about the contents.
func openBolt(path string, readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly})
	if err != nil {
		var pathErr *fs.PathError
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, ErrLocked
		case errors.As(err, &pathErr):
			return nil, err
		default:
			return nil, &corruptError{err}
		}
	}
	return db, nil
}

// closeQuietly closes a database that is being given up on; a panic or an
// error on the way out changes nothing about that.
func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// readAll reads and decodes every record of a schema-1 database.
func readAll(tx *bolt.Tx) (content, error) {
	var c content
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		n := 0
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { n++; return nil })
		if n == 0 {
			return content{empty: true, workloads: map[string][]byte{}}, nil
		}
		return content{}, corruptf("bucket %s missing", bucketMeta)
	}
	v := meta.Get(keyVersion)
	if v == nil {
		return content{}, corruptf("schema version missing")
	}
	if err := json.Unmarshal(v, &c.version); err != nil {
		return content{}, corruptf("decode schema version: %w", err)
	}
	if c.version > SchemaVersion {
		return content{}, fmt.Errorf("%w: schema version %d, this agent supports %d", ErrNewerSchema, c.version, SchemaVersion)
	}
	if c.version < 1 {
		return content{}, corruptf("invalid schema version %d", c.version)
	}
	if err := json.Unmarshal(meta.Get(keyEpoch), &c.epoch); err != nil {
		return content{}, corruptf("decode epoch: %w", err)
	}
	if _, err := hex.DecodeString(c.epoch); err != nil || len(c.epoch) != 16 {
		return content{}, corruptf("invalid epoch %q", c.epoch)
	}

	err := forEachRecord(tx, bucketMeta, func(k, v []byte) error {
		if !json.Valid(v) {
			return errors.New("not JSON")
		}
		return nil
	})
	if err != nil {
		return content{}, err
	}

	c.workloads = make(map[string][]byte)
	err = forEachRecord(tx, bucketWorkloads, func(k, v []byte) error {
		if !json.Valid(v) {
			return errors.New("not JSON")
		}
		c.workloads[string(k)] = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return content{}, err
	}

	err = forEachRecord(tx, bucketInstances, func(k, v []byte) error {
		var in Instance
		return json.Unmarshal(v, &in)
	})
	if err != nil {
		return content{}, err
	}

	events := tx.Bucket(bucketEvents)
	err = forEachRecord(tx, bucketEvents, func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("key is %d bytes, want 8", len(k))
		}
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if seq := binary.BigEndian.Uint64(k); e.Seq != seq || seq > events.Sequence() {
			return fmt.Errorf("seq %d under key %d, bucket sequence %d", e.Seq, seq, events.Sequence())
		}
		return nil
	})
	if err != nil {
		return content{}, err
	}
	return c, nil
}

// forEachRecord calls fn for every key of a top-level bucket, which must
// exist and hold no nested buckets. Any failure is corruption.
func forEachRecord(tx *bolt.Tx, bucket []byte, fn func(k, v []byte) error) error {
	b := tx.Bucket(bucket)
	if b == nil {
		return corruptf("bucket %s missing", bucket)
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return corruptf("bucket %s: unexpected nested bucket %q", bucket, k)
		}
		if err := fn(k, v); err != nil {
			return corruptf("bucket %s: record %q: %w", bucket, k, err)
		}
		return nil
	})
}

// moveAside renames path to path.corrupt-<unix-nanos> (the first free name
// from now on) and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	for n := now.UnixNano(); ; n++ {
		dst := fmt.Sprintf("%s.corrupt-%d", path, n)
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(path, dst); err != nil {
			return "", fmt.Errorf("move aside %s: %w", path, err)
		}
		return dst, syncDir(filepath.Dir(path))
	}
}

// writeAtomic replaces dir/name with what fill writes: a temp file in dir,
// fsync, rename, fsync dir. A crash leaves either the old or the new file.
func writeAtomic(dir, name string, fill func(f *os.File) error) (err error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes temp files left by an interrupted writeAtomic. It is
// best effort: a leftover temp file harms nothing.
func removeTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
