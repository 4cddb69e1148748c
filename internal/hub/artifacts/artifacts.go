// Package artifacts is the hub's artifact store: content-addressed blobs
// (WASM modules, later binaries and image tarballs) kept in the JetStream
// object store wire.ArtifactStore under their reference "sha256:<hex>",
// from which agents fetch what their plans name. The hub stores a blob only
// once its bytes hash to its reference.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/wire"
)

// Errors.
var (
	// ErrBadRef: the reference is not "sha256:" and 64 lowercase hex digits.
	ErrBadRef = errors.New("not an artifact reference (sha256: followed by 64 lowercase hex digits)")
	// ErrDigestMismatch: the bytes do not hash to the reference.
	ErrDigestMismatch = errors.New("content does not match the digest")
)

// Config tunes the store.
type Config struct {
	// Replicas for a clustered JetStream; 0 means 1.
	Replicas int
	// TempDir holds an upload while its digest is checked; empty means the
	// system's temporary directory.
	TempDir string
}

// Store is the artifact store.
type Store struct {
	obs     jetstream.ObjectStore
	tempDir string
}

// Open creates the object store if it does not exist yet.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      wire.ArtifactStore,
		Description: "atoll artifacts by sha256 reference",
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	return &Store{obs: obs, tempDir: cfg.TempDir}, nil
}

// ValidRef reports whether ref is "sha256:" and 64 lowercase hex digits.
func ValidRef(ref string) bool {
	const prefix = "sha256:"
	if len(ref) != len(prefix)+64 || ref[:len(prefix)] != prefix {
		return false
	}
	for _, c := range []byte(ref[len(prefix):]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Has reports whether ref is stored.
func (s *Store) Has(ctx context.Context, ref string) (bool, error) {
	_, ok, err := s.Size(ctx, ref)
	return ok, err
}

// Size is the size of the artifact ref, and whether it is stored.
func (s *Store) Size(ctx context.Context, ref string) (int64, bool, error) {
	info, err := s.obs.GetInfo(ctx, ref)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up artifact %s: %w", ref, err)
	}
	return int64(info.Size), true, nil
}

// Put stores the bytes of r as ref, after checking that they hash to it.
// The bytes wait in a temporary file meanwhile, so that nothing
// unverified is ever in the store. Storing an artifact that is there
// already is a no-op (r is not read).
func (s *Store) Put(ctx context.Context, ref string, r io.Reader) error {
	if !ValidRef(ref) {
		return fmt.Errorf("put artifact %q: %w", ref, ErrBadRef)
	}
	if ok, err := s.Has(ctx, ref); err != nil || ok {
		return err
	}
	f, err := os.CreateTemp(s.tempDir, "atoll-artifact-*")
	if err != nil {
		return fmt.Errorf("put artifact %s: %w", ref, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		return fmt.Errorf("put artifact %s: %w", ref, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != ref {
		return fmt.Errorf("put artifact %s: %w: the bytes hash to %s", ref, ErrDigestMismatch, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put artifact %s: %w", ref, err)
	}
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: ref}, f); err != nil {
		return fmt.Errorf("put artifact %s: %w", ref, err)
	}
	return nil
}
