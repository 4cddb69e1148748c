package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Download is an artifact arriving in pieces, kept across cuts of the link
// and restarts of the agent so that a download resumes where it stopped.
// Its bytes so far are in Dir/partial/<hex>; beside them, in <hex>.cursor,
// the length they had after the last Append and the caller's cursor (an
// opaque position in the source, such as a stream sequence).
//
// Appends are not synced: after a power cut the bytes may be shorter than
// the cursor says (the download then starts over) or hold garbage (Commit
// then finds the digest wrong, discards them, and the download starts
// over). Either way nothing unverified reaches the cache.
type Download struct {
	c      Cache
	ref    string
	path   string
	f      *os.File
	size   int64
	cursor string
}

// cursorFile is what <hex>.cursor holds.
type cursorFile struct {
	Size   int64  `json:"size"`
	Cursor string `json:"cursor"`
}

// Resume opens the download of ref, creating it if there is none. Size and
// Cursor say what it has; the caller asks its source for what follows.
func (c Cache) Resume(ref string) (*Download, error) {
	final, err := c.Path(ref)
	if err != nil {
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	dir := filepath.Join(c.Dir, "partial")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	d := &Download{c: c, ref: ref, path: filepath.Join(dir, filepath.Base(final))}
	var cur cursorFile
	if b, err := os.ReadFile(d.path + ".cursor"); err == nil {
		if json.Unmarshal(b, &cur) != nil {
			cur = cursorFile{} // torn: start over
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	if d.f, err = os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	st, err := d.f.Stat()
	if err != nil || st.Size() < cur.Size {
		cur = cursorFile{} // the bytes did not survive: start over
	}
	// Bytes past the cursor were written, but the cursor after them was
	// not: drop them, the source sends them again.
	if err := d.f.Truncate(cur.Size); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	if _, err := d.f.Seek(cur.Size, io.SeekStart); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("resume artifact: %w", err)
	}
	d.size, d.cursor = cur.Size, cur.Cursor
	return d, nil
}

// Size is how many bytes the download has.
func (d *Download) Size() int64 { return d.size }

// Cursor is the cursor given with the last Append, "" for a new download.
func (d *Download) Cursor() string { return d.cursor }

// Append adds b and records cursor as the position after it.
func (d *Download) Append(b []byte, cursor string) error {
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("artifact download: %w", err)
	}
	d.size += int64(len(b))
	d.cursor = cursor
	rec, _ := json.Marshal(cursorFile{Size: d.size, Cursor: cursor})
	tmp := d.path + ".cursor.tmp"
	if err := os.WriteFile(tmp, rec, 0o600); err != nil {
		return fmt.Errorf("artifact download: %w", err)
	}
	if err := os.Rename(tmp, d.path+".cursor"); err != nil {
		return fmt.Errorf("artifact download: %w", err)
	}
	return nil
}

// Restart drops what the download has, for a source that cannot continue
// from the cursor (the artifact was uploaded again, for example).
func (d *Download) Restart() error {
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("artifact download: %w", err)
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("artifact download: %w", err)
	}
	d.size, d.cursor = 0, ""
	if err := os.Remove(d.path + ".cursor"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifact download: %w", err)
	}
	return nil
}

// Commit checks that the bytes hash to the reference and moves them into
// the cache, synced. Bytes that do not are discarded, so the next Resume
// starts over, and Commit returns ErrDigestMismatch.
func (d *Download) Commit() error {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("commit artifact: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, d.f); err != nil {
		return fmt.Errorf("commit artifact: %w", err)
	}
	if got := Prefix + hex.EncodeToString(h.Sum(nil)); got != d.ref {
		d.discard()
		return fmt.Errorf("commit artifact: the bytes hash to %s, not %s: %w", got, d.ref, ErrDigestMismatch)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("commit artifact: %w", err)
	}
	final, _ := d.c.Path(d.ref)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return fmt.Errorf("commit artifact: %w", err)
	}
	if err := os.Rename(d.path, final); err != nil {
		return fmt.Errorf("commit artifact: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	d.discard()
	return nil
}

// Close releases the download's file; what it has stays for Resume.
func (d *Download) Close() error { return d.f.Close() }

// discard removes the partial bytes and their cursor (after Commit moved
// the bytes, only the cursor is left).
func (d *Download) discard() {
	os.Remove(d.path)
	os.Remove(d.path + ".cursor")
}

// Partial is how many bytes an unfinished download of ref has so far (0
// when there is none): a download's progress, for people.
func (c Cache) Partial(ref string) int64 {
	final, err := c.Path(ref)
	if err != nil {
		return 0
	}
	st, err := os.Stat(filepath.Join(c.Dir, "partial", filepath.Base(final)))
	if err != nil {
		return 0
	}
	return st.Size()
}
