package container

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/atolltest/testimage"
)

// removeImage removes ref from the engine when the test ends.
func removeImage(t *testing.T, ref string) {
	t.Cleanup(func() {
		_, _ = engine.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
}

// writeArchive writes the test image's archive, named ref, to a file.
func writeArchive(t *testing.T, ref string) string {
	t.Helper()
	b, err := testimage.Archive(ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDriver_Start_LoadsArchive(t *testing.T) {
	d := newDriver(t)
	ref := testimage.UniqueRef("atoll-test/archived")
	removeImage(t, ref)
	spec := newSpec(t, "archived", "exit:0")
	spec.Container.Image, spec.Container.Archive = ref, writeArchive(t, ref)
	h, _ := start(t, d, spec)
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("exit = %+v", exit)
	}
	if _, err := engine.ImageInspect(context.Background(), ref); err != nil {
		t.Fatalf("the engine lacks the loaded image: %v", err)
	}
	// Started again, the archive is not loaded again: the mark says so,
	// and a missing file would fail the load.
	if err := os.Remove(spec.Container.Archive); err != nil {
		t.Fatal(err)
	}
	h, _ = start(t, d, spec)
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("second run: exit = %+v", exit)
	}
}

func TestDriver_Start_ArchiveErrors(t *testing.T) {
	d := newDriver(t)
	other := testimage.UniqueRef("atoll-test/other")
	removeImage(t, other)
	garbage := filepath.Join(t.TempDir(), "garbage.tar")
	if err := os.WriteFile(garbage, []byte("not a tar archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, archive, want string }{
		{"garbage", garbage, "load image atoll-test/wanted:1 from its archive: the engine says: "},
		{"other-name", writeArchive(t, other), "load image atoll-test/wanted:1: the archive was loaded but the engine has no image of that name"},
	} {
		spec := newSpec(t, "bad-archive", "sleep")
		spec.Container.Image, spec.Container.Archive = "atoll-test/wanted:1", tt.archive
		_, err := d.Start(context.Background(), spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: start = %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestDriver_Start_PullsFromRegistry(t *testing.T) {
	d := newDriver(t)
	// The registry runs in the test, on loopback, which the engine treats
	// as an insecure (plain HTTP) registry.
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/" + testimage.UniqueRef("atoll-test/pulled")
	if err := testimage.Push(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	removeImage(t, ref)
	spec := newSpec(t, "pulled", "exit:0")
	spec.Container.Image = ref
	h, _ := start(t, d, spec)
	if exit := wait(t, d, h); exit.Failed() {
		t.Fatalf("exit = %+v", exit)
	}
	// A tag the registry does not have: the engine's error, clearly.
	spec.Container.Image = strings.TrimPrefix(reg.URL, "http://") + "/atoll-test/pulled:absent"
	_, err := d.Start(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "pulling it from its registry failed: ") {
		t.Errorf("start with an absent tag: %v", err)
	}
}
