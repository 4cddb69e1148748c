package logfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write from Follow's goroutine while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startFollow runs Follow in the background and stops it at the end of the
// test, failing if it did not return nil promptly.
func startFollow(t *testing.T, path string, from int64, w *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, from, w, time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Follow returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Follow did not return after cancel")
		}
	})
}

// waitForOutput waits until b holds exactly want, and says what it held
// when it never does.
func waitForOutput(t *testing.T, b *syncBuffer, what, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for b.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: have %q, want %q", what, b.String(), want)
		}
		<-tick.C
	}
}

func TestFollow_AppendedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	write(t, w, "old\n")

	var out syncBuffer
	startFollow(t, path, 0, &out)
	waitForOutput(t, &out, "the existing line", "old\n")

	write(t, w, "one\n")
	write(t, w, "two\n")
	waitForOutput(t, &out, "both appended lines", "old\none\ntwo\n")
}

func TestFollow_WaitsForMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	var out syncBuffer
	startFollow(t, path, 0, &out)
	w := openAppend(t, path)
	write(t, w, "hello\n")
	waitForOutput(t, &out, "the first line of a file created late", "hello\n")
}

func TestFollow_SurvivesRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	var out syncBuffer
	startFollow(t, path, 0, &out)

	write(t, w, "1 before\n")
	waitForOutput(t, &out, "the first line", "1 before\n")

	for round := range 5 {
		// Whether or not Follow saw the last line before the rotation,
		// it appears exactly once: from app.log or from app.log.1.
		write(t, w, "2 just before rotation\n")
		if _, err := Rotate(path, 0, 2); err != nil {
			t.Fatal(err)
		}
		write(t, w, "3 after\n")
		want := "1 before\n" + strings.Repeat("2 just before rotation\n3 after\n", round+1)
		waitForOutput(t, &out, "the lines around the rotation", want)
	}
}

func TestFollow_ReturnsWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	write(t, openAppend(t, path), "line\n")
	boom := errors.New("client went away")
	err := Follow(context.Background(), path, 0, failingWriter{boom}, time.Millisecond)
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "follow "+path+": ") {
		t.Errorf("Follow = %v, want the write error wrapped", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestFollow_ReturnsWhenContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out syncBuffer
	if err := Follow(ctx, filepath.Join(t.TempDir(), "app.log"), 0, &out, time.Hour); err != nil {
		t.Errorf("Follow with a done context = %v, want nil", err)
	}
}

// The cases below drive the follower one look at a time, so that what the
// writer and Rotate do between two looks is exact.

func TestFollower_RotationNoticedByShrink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	var out syncBuffer
	f := &follower{path: path, w: &out}

	write(t, w, "aaaa\n")
	step(t, f)
	write(t, w, "unread\n") // Follow never looks before the rotation
	rotate(t, path)
	write(t, w, "new\n")
	step(t, f)
	if got, want := out.String(), "aaaa\nunread\nnew\n"; got != want {
		t.Errorf("followed %q, want %q", got, want)
	}
}

func TestFollower_RotationNoticedWhenRegrown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	var out syncBuffer
	f := &follower{path: path, w: &out}

	write(t, w, "short\n")
	step(t, f)
	write(t, w, "unread\n")
	rotate(t, path)
	// The fresh log grows past the old offset before the next look.
	regrown := "a much longer line written after the rotation\n"
	write(t, w, regrown)
	step(t, f)
	if got, want := out.String(), "short\nunread\n"+regrown; got != want {
		t.Errorf("followed %q, want %q", got, want)
	}
}

func TestFollower_TruncatedWithoutCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	var out syncBuffer
	f := &follower{path: path, w: &out}

	write(t, w, "first\n")
	step(t, f)
	// An unrelated app.log.1 that is not a copy of what was followed.
	if err := os.WriteFile(path+".1", []byte("something else entirely\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	write(t, w, "second\n")
	step(t, f)
	if got, want := out.String(), "first\nsecond\n"; got != want {
		t.Errorf("followed %q, want %q", got, want)
	}
}

func TestFollower_FromEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	write(t, w, "old\n")
	var out syncBuffer
	f := &follower{path: path, w: &out, off: -1}
	step(t, f)
	write(t, w, "new\n")
	step(t, f)
	if got := out.String(); got != "new\n" {
		t.Errorf("followed %q, want only what came after the first look", got)
	}
}

func TestFollower_FromOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	write(t, w, "seen\nunseen\n")
	var out syncBuffer
	f := &follower{path: path, w: &out, off: int64(len("seen\n"))}
	step(t, f)
	if got := out.String(); got != "unseen\n" {
		t.Errorf("followed %q, want the file from the offset", got)
	}
}

func TestFollower_StartBeyondEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	write(t, openAppend(t, path), "fresh\n")
	var out syncBuffer
	// An offset from before a rotation the caller did not see.
	f := &follower{path: path, w: &out, off: 1000}
	step(t, f)
	if got := out.String(); got != "fresh\n" {
		t.Errorf("followed %q, want the file from its start", got)
	}
}

func step(t *testing.T, f *follower) {
	t.Helper()
	if err := f.step(); err != nil {
		t.Fatal(err)
	}
}

func rotate(t *testing.T, path string) {
	t.Helper()
	if rotated, err := Rotate(path, 0, 3); err != nil || !rotated {
		t.Fatalf("Rotate = %v, %v", rotated, err)
	}
}
