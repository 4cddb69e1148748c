package artifact_test

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
)

func TestCache_Evict_OldestUnusedFirst(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	var refs []string
	for i := range 4 {
		ref, err := c.Put(bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 100)), "")
		if err != nil {
			t.Fatal(err)
		}
		// Stored one minute apart, oldest first.
		path, _ := c.Path(ref)
		mt := time.Now().Add(time.Duration(i-10) * time.Minute)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	inUse := func(ref string) bool { return ref == refs[0] }
	// 400 bytes, budget 250: the two oldest unused go; the oldest of all
	// is in use and stays.
	removed, err := c.Evict(250, inUse)
	if err != nil || !slices.Equal(removed, refs[1:3]) {
		t.Fatalf("Evict = %q, %v; want %q", removed, err, refs[1:3])
	}
	for i, ref := range refs {
		path, _ := c.Path(ref)
		_, err := os.Stat(path)
		if gone := err != nil; gone != (i == 1 || i == 2) {
			t.Errorf("artifact %d: gone = %v", i, gone)
		}
	}
	// Over budget with only what is in use left: nothing more goes.
	if removed, err := c.Evict(0, func(string) bool { return true }); err != nil || len(removed) != 0 {
		t.Errorf("Evict of used artifacts = %q, %v", removed, err)
	}
	if removed, err := (artifact.Cache{Dir: t.TempDir()}).Evict(0, inUse); err != nil || removed != nil {
		t.Errorf("Evict of an empty cache = %q, %v", removed, err)
	}
}

func TestCache_Partial(t *testing.T) {
	c := artifact.Cache{Dir: t.TempDir()}
	ref := artifact.Prefix + "0000000000000000000000000000000000000000000000000000000000000000"
	if n := c.Partial(ref); n != 0 {
		t.Errorf("Partial with no download = %d", n)
	}
	d, err := c.Resume(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Append(make([]byte, 1234), "c1"); err != nil {
		t.Fatal(err)
	}
	if n := c.Partial(ref); n != 1234 {
		t.Errorf("Partial = %d, want 1234", n)
	}
}
