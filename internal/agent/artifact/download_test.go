package artifact_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/artifact"
)

func refOf(data string) string {
	sum := sha256.Sum256([]byte(data))
	return artifact.Prefix + hex.EncodeToString(sum[:])
}

func resume(t *testing.T, c artifact.Cache, ref string) *artifact.Download {
	t.Helper()
	d, err := c.Resume(ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDownload_ResumesWhereItStopped(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	data := strings.Repeat("chunk-one|", 10) + strings.Repeat("chunk-two|", 10)
	ref := refOf(data)

	d := resume(t, c, ref)
	if d.Size() != 0 || d.Cursor() != "" {
		t.Fatalf("new download has %d bytes, cursor %q", d.Size(), d.Cursor())
	}
	if err := d.Append([]byte(data[:100]), "seq 7"); err != nil {
		t.Fatal(err)
	}
	d.Close() // the link is cut, the agent restarts

	d = resume(t, c, ref)
	if d.Size() != 100 || d.Cursor() != "seq 7" {
		t.Fatalf("resumed with %d bytes, cursor %q; want 100, seq 7", d.Size(), d.Cursor())
	}
	if err := d.Append([]byte(data[100:]), "seq 9"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	path, _ := c.Path(ref)
	if got, err := os.ReadFile(path); err != nil || string(got) != data {
		t.Fatalf("cache holds %q, %v", got, err)
	}
	if left, _ := os.ReadDir(filepath.Join(c.Dir, "partial")); len(left) != 0 {
		t.Fatalf("a committed download left %v", left)
	}
}

func TestDownload_DropsBytesPastTheCursor(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	data := "0123456789abcdef"
	ref := refOf(data)
	d := resume(t, c, ref)
	if err := d.Append([]byte(data[:4]), "a"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A crash after writing bytes but before recording the cursor.
	partial := filepath.Join(c.Dir, "partial", strings.TrimPrefix(ref, artifact.Prefix))
	f, err := os.OpenFile(partial, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("4567")
	f.Close()

	d = resume(t, c, ref)
	if d.Size() != 4 || d.Cursor() != "a" {
		t.Fatalf("resumed with %d bytes, cursor %q; want 4, a", d.Size(), d.Cursor())
	}
	if err := d.Append([]byte(data[4:]), "b"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatalf("commit: %v (bytes past the cursor were kept?)", err)
	}
}

func TestDownload_StartsOverWhenBytesAreLost(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	ref := refOf("whatever")
	d := resume(t, c, ref)
	if err := d.Append([]byte("what"), "a"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A power cut: the cursor was recorded, the bytes never reached disk.
	partial := filepath.Join(c.Dir, "partial", strings.TrimPrefix(ref, artifact.Prefix))
	if err := os.Truncate(partial, 1); err != nil {
		t.Fatal(err)
	}
	d = resume(t, c, ref)
	if d.Size() != 0 || d.Cursor() != "" {
		t.Fatalf("resumed with %d bytes, cursor %q; want a fresh start", d.Size(), d.Cursor())
	}
}

func TestDownload_CommitRejectsWrongBytes(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	ref := refOf("the real bytes")
	d := resume(t, c, ref)
	if err := d.Append([]byte("corrupted bytes"), "a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("commit = %v, want ErrDigestMismatch", err)
	}
	path, _ := c.Path(ref)
	if _, err := os.Stat(path); err == nil {
		t.Fatal("wrong bytes reached the cache")
	}
	d.Close()
	d = resume(t, c, ref)
	if d.Size() != 0 || d.Cursor() != "" {
		t.Fatalf("after a bad commit the download resumes with %d bytes, cursor %q", d.Size(), d.Cursor())
	}
}

func TestDownload_Restart(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	data := "fresh"
	ref := refOf(data)
	d := resume(t, c, ref)
	if err := d.Append([]byte("stale"), "old source"); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if d.Size() != 0 || d.Cursor() != "" {
		t.Fatalf("after Restart: %d bytes, cursor %q", d.Size(), d.Cursor())
	}
	if err := d.Append([]byte(data), "new source"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestCache_ResumeRejectsBadRef(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	if _, err := c.Resume("sha256:../x"); !errors.Is(err, artifact.ErrBadRef) {
		t.Fatalf("Resume = %v, want ErrBadRef", err)
	}
}
