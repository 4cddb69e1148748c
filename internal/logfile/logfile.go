// Package logfile rotates, tails and follows the per-workload log files that
// workloads write directly.
//
// A workload holds its log open with O_APPEND, so rotation is copy-truncate:
// the content is copied to path.1 (older copies shift to path.2 …) and path is
// truncated to zero; the writer keeps its descriptor and, thanks to O_APPEND,
// carries on at the new end of the same file. Readers treat path.1 followed
// by path as one stream.
//
// Copy-truncate has one inherent gap: bytes written in the instant between
// the last copy and the truncate are lost. Rotate keeps that instant short by
// copying until it catches up with the writer just before truncating.
package logfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// chunkSize is how much Tail and Follow read at a time.
const chunkSize = 32 << 10

// Rotate copy-truncates path when it is larger than maxBytes: it shifts
// path.1 → path.2 … so that at most keep older copies remain, copies path to
// path.1 and truncates path to zero. With keep <= 0 it only truncates. It reports whether it
// rotated; a missing path is not an error and is not rotated.
//
// Rotate is meant to be called by one goroutine per path.
func Rotate(path string, maxBytes int64, keep int) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	if fi.Size() <= maxBytes {
		return false, nil
	}
	if keep <= 0 {
		if err := os.Truncate(path, 0); err != nil {
			return false, fmt.Errorf("rotate %s: %w", path, err)
		}
		return true, nil
	}
	if err := shift(path, keep); err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := copyTruncate(path, rotated(path, 1), fi.Mode().Perm()); err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	return true, nil
}

// rotated names the i-th older copy of path.
func rotated(path string, i int) string { return path + "." + strconv.Itoa(i) }

// shift drops path.keep and renames path.i to path.i+1 for i = keep-1 … 1,
// making room for a new path.1.
func shift(path string, keep int) error {
	if err := os.Remove(rotated(path, keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(rotated(path, i), rotated(path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// copyTruncate copies path to dst (through a temp file, synced before it
// takes dst's name) and truncates path, copying whatever the writer added in
// the meantime just before the truncate.
func copyTruncate(path, dst string, perm fs.FileMode) (err error) {
	dir, prefix := filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"
	removeStale(dir, prefix)
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	// tmp is dst now; from here on a failure must not remove it.
	defer func() {
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
	}()
	// Catch up with the writer, then cut. Only what it writes between
	// these two calls is lost.
	if _, err := io.Copy(tmp, src); err != nil {
		return err
	}
	if err := os.Truncate(path, 0); err != nil {
		return err
	}
	return nil
}

// removeStale deletes temp files an interrupted Rotate left in dir. It is
// best effort: a leftover temp file harms nothing.
func removeStale(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Tail returns the last n lines of the log: of path.1 followed by path, so
// that lines from before the last rotation count when path has fewer than n.
// A line split by the rotation (its start in path.1, its end in path) counts
// once. The final line need not end in a newline. n <= 0 returns nothing.
func Tail(path string, n int) ([]byte, error) {
	if n <= 0 {
		return []byte{}, nil
	}
	var (
		chunks  [][]byte // read backwards: chunks[0] is the stream's end
		atEnd   = true   // the next byte examined is the stream's last
		newline = 0      // line breaks seen before the suffix's start
	)
	for i, name := range []string{path, rotated(path, 1)} {
		f, err := os.Open(name)
		if i > 0 && errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tail %s: %w", path, err)
		}
		done, err := tailFile(f, n, &chunks, &atEnd, &newline)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("tail %s: %w", name, err)
		}
		if done {
			break
		}
	}
	var out []byte
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// tailFile walks f backwards, appending what it reads to chunks, until it
// has seen the line break in front of the n-th line from the stream's end.
// It reports whether it got there.
func tailFile(f *os.File, n int, chunks *[][]byte, atEnd *bool, newlines *int) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	for pos := fi.Size(); pos > 0; {
		size := min(pos, chunkSize)
		pos -= size
		buf := make([]byte, size)
		if _, err := f.ReadAt(buf, pos); err != nil && err != io.EOF {
			return false, err
		}
		for j := len(buf) - 1; j >= 0; j-- {
			if buf[j] != '\n' {
				*atEnd = false
				continue
			}
			if *atEnd {
				// The stream's final newline ends its last line.
				*atEnd = false
				continue
			}
			*newlines++
			if *newlines == n {
				*chunks = append(*chunks, buf[j+1:])
				return true, nil
			}
		}
		*chunks = append(*chunks, buf)
	}
	return false, nil
}
