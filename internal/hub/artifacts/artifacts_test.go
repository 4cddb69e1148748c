package artifacts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hub/artifacts"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/wire"
)

func ref(b string) string {
	sum := sha256.Sum256([]byte(b))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// failReader fails the test if read: Put must not read what it has.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Fatal("Put read the body of an artifact it already has")
	return 0, io.EOF
}

func TestStore_Put(t *testing.T) {
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)
	tmp := t.TempDir()
	s, err := artifacts.Open(ctx, js, artifacts.Config{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	const body = "\x00asm module bytes"
	good := ref(body)

	if err := s.Put(ctx, good, strings.NewReader("other bytes")); !errors.Is(err, artifacts.ErrDigestMismatch) {
		t.Fatalf("put of wrong bytes = %v, want ErrDigestMismatch", err)
	}
	if ok, _ := s.Has(ctx, good); ok {
		t.Fatal("an unverified artifact was stored")
	}
	for _, bad := range []string{"sha256:ABC", "md5:" + good[7:], good + "0", "sha256:" + strings.Repeat("g", 64)} {
		if err := s.Put(ctx, bad, strings.NewReader(body)); !errors.Is(err, artifacts.ErrBadRef) {
			t.Fatalf("put %q = %v, want ErrBadRef", bad, err)
		}
	}
	if err := s.Put(ctx, good, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, good, failReader{t}); err != nil {
		t.Fatalf("second put = %v", err)
	}
	// An agent reads it straight from the object store.
	obs, err := js.ObjectStore(ctx, wire.ArtifactStore)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(ctx, good)
	if err != nil || string(got) != body {
		t.Fatalf("object %s = %q, %v", good, got, err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
