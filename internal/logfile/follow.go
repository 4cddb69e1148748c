package logfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// DefaultPoll is the interval Follow uses when given none.
const DefaultPoll = 250 * time.Millisecond

// sigSize is how many bytes before its offset Follow remembers, to notice a
// rotation after which the file grew past that offset again.
const sigSize = 64

// Follow writes to w whatever is appended to path from offset from on, until
// ctx is done, looking every poll (DefaultPoll if poll <= 0). from < 0 starts
// at the current end. A missing path is waited for.
//
// Follow copes with copy-truncate rotation. It takes the file as rotated
// when it is shorter than the offset reached, or when the bytes just before
// that offset are no longer the ones it read there (it was truncated and
// grew past the offset again between two looks). It then first writes what
// path.1 holds beyond the offset, if path.1 is the copy of what it was
// reading — the lines written just before the rotation — and goes on from the
// start of path. Two rotations between two looks lose what Follow had not
// read yet.
//
// Follow returns nil when ctx is done, and an error when reading path or
// writing to w fails.
func Follow(ctx context.Context, path string, from int64, w io.Writer, poll time.Duration) error {
	if poll <= 0 {
		poll = DefaultPoll
	}
	f := &follower{path: path, w: w, off: from}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := f.step(); err != nil {
			return fmt.Errorf("follow %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// follower is Follow's state between two looks at the file.
type follower struct {
	path string
	w    io.Writer
	off  int64 // next byte to write; < 0 until the first look when starting at the end
	// sig holds the bytes just before off as last read; sigKnown is false
	// until they have been read.
	sig      []byte
	sigKnown bool
	// old describes path.1 at the last look (nil: missing); seenOld is
	// false before the first look.
	old     fs.FileInfo
	seenOld bool
}

// step looks at the file once and writes what is new.
func (f *follower) step() error {
	file, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	old, err := os.Stat(rotated(f.path, 1))
	if errors.Is(err, fs.ErrNotExist) {
		old, err = nil, nil
	}
	if err != nil {
		return err
	}

	if f.off < 0 {
		f.off = size
	}
	if !f.sigKnown && f.off <= size {
		if f.sig, err = readSig(file, f.off); err != nil {
			return err
		}
		f.sigKnown = true
	}
	// Rotated? Cheap signs first: the file shrank, or the bytes before
	// the offset changed.
	moved := f.off > size
	if !moved {
		same, err := hasAt(file, f.sig, f.off)
		if err != nil {
			return err
		}
		moved = !same
	}
	// Then the sure sign when the new content happens to repeat the old:
	// Rotate put a new path.1 in place. A missing path.1 (as while Rotate
	// shifts the older copies) is no sign of anything. Between Rotate's
	// copy and its truncate path.1 is still a prefix of path; then it is
	// not rotated yet, and the next look checks again.
	if old == nil {
		old = f.old
	}
	if !moved && f.seenOld && !sameFile(f.old, old) {
		prefix, err := isPrefix(rotated(f.path, 1), file)
		if err != nil {
			return err
		}
		moved = !prefix
		if prefix {
			old = f.old
		}
	}
	f.old, f.seenOld = old, true
	if moved {
		if err := f.drainRotated(); err != nil {
			return err
		}
		f.off, f.sig, f.sigKnown = 0, nil, true
	}
	return f.copy(file, size)
}

// sameFile reports whether a and b describe the same, unchanged file (or
// are both nil). Size and time guard against a reused inode number.
func sameFile(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// isPrefix reports whether the file at path holds exactly the first bytes
// of file.
func isPrefix(path string, file *os.File) (bool, error) {
	p, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer p.Close()
	a, b := make([]byte, chunkSize), make([]byte, chunkSize)
	for off := int64(0); ; off += chunkSize {
		na, errA := p.ReadAt(a, off)
		if errA != nil && errA != io.EOF {
			return false, errA
		}
		if na == 0 {
			return true, nil
		}
		nb, errB := file.ReadAt(b[:na], off)
		if errB != nil && errB != io.EOF {
			return false, errB
		}
		if nb != na || !bytes.Equal(a[:na], b[:na]) {
			return false, nil
		}
		if errA == io.EOF {
			return true, nil
		}
	}
}

// drainRotated writes what path.1 holds beyond the offset, if path.1 is the
// copy of the file Follow was reading: long enough, and with the remembered
// bytes just before the offset.
func (f *follower) drainRotated() error {
	if !f.sigKnown || f.off == 0 {
		return nil
	}
	old, err := os.Open(rotated(f.path, 1))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer old.Close()
	fi, err := old.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < f.off {
		return nil
	}
	if same, err := hasAt(old, f.sig, f.off); err != nil || !same {
		return err
	}
	return f.copy(old, fi.Size())
}

// copy writes src from the offset up to end, advancing the offset and the
// remembered bytes before it.
func (f *follower) copy(src *os.File, end int64) error {
	buf := make([]byte, min(max(end-f.off, 0), chunkSize))
	for f.off < end {
		n, err := src.ReadAt(buf[:min(end-f.off, int64(len(buf)))], f.off)
		if n > 0 {
			if _, werr := f.w.Write(buf[:n]); werr != nil {
				return werr
			}
			f.off += int64(n)
			f.sig = append(f.sig, buf[:n]...)
			f.sig = bytes.Clone(f.sig[max(0, len(f.sig)-sigSize):])
		}
		if err == io.EOF {
			// The file shrank while being read; the next look sorts
			// it out.
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readSig returns the up to sigSize bytes of file just before off.
func readSig(file *os.File, off int64) ([]byte, error) {
	start := max(0, off-sigSize)
	sig := make([]byte, off-start)
	n, err := file.ReadAt(sig, start)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return sig[:n], nil
}

// hasAt reports whether file holds sig just before off.
func hasAt(file *os.File, sig []byte, off int64) (bool, error) {
	if len(sig) == 0 {
		return true, nil
	}
	got := make([]byte, len(sig))
	n, err := file.ReadAt(got, off-int64(len(sig)))
	if err != nil && err != io.EOF {
		return false, err
	}
	return bytes.Equal(got[:n], sig), nil
}
