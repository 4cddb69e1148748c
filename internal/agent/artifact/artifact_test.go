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

func TestCache_PutAndPath(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	data := "\x00asm module bytes"
	sum := sha256.Sum256([]byte(data))
	want := "sha256:" + hex.EncodeToString(sum[:])

	ref, err := c.Put(strings.NewReader(data), "")
	if err != nil || ref != want {
		t.Fatalf("Put = %q, %v; want %q", ref, err, want)
	}
	path, err := c.Path(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != data {
		t.Fatalf("stored %q, %v", got, err)
	}
	// Putting the same bytes again with the announced digest is fine.
	if _, err := c.Put(strings.NewReader(data), want); err != nil {
		t.Fatal(err)
	}
}

func TestCache_PutRejectsMismatch(t *testing.T) {
	dir := t.TempDir()
	c := artifact.Cache{Dir: dir}
	other := "sha256:" + strings.Repeat("0", 64)
	if _, err := c.Put(strings.NewReader("bytes"), other); !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sha256"))
	if len(entries) != 0 {
		t.Fatalf("a rejected artifact left files: %v", entries)
	}
}

func TestCache_PathRejectsBadRefs(t *testing.T) {
	c := artifact.Cache{Dir: "/x"}
	for _, ref := range []string{"", "sha256:abc", "md5:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), "sha256:../../" + strings.Repeat("a", 58)} {
		if _, err := c.Path(ref); err == nil {
			t.Errorf("Path(%q) accepted", ref)
		}
	}
}
