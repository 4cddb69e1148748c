// Package artifact is the agent's content-addressed cache of workload
// artifacts (WASM modules today): files named by the sha256 of their bytes,
// so a stored plan refers to exactly the bytes it was applied with, and a
// node that reboots with no network still has them.
package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Prefix starts every artifact reference: "sha256:<64 hex digits>".
const Prefix = "sha256:"

// ErrDigestMismatch is returned when bytes do not hash to the digest the
// caller announced.
var ErrDigestMismatch = errors.New("artifact digest mismatch")

// ErrBadRef is returned for a reference that is not sha256:<64 lowercase hex>.
var ErrBadRef = errors.New("not a sha256:<64 lowercase hex> artifact reference")

// Cache stores artifacts under Dir/sha256/<hex>.
type Cache struct{ Dir string }

// Path returns where the artifact ref ("sha256:<hex>") lives, whether or not
// it is present.
func (c Cache) Path(ref string) (string, error) {
	hexDigest, ok := strings.CutPrefix(ref, Prefix)
	if !ok || len(hexDigest) != 64 || strings.Trim(hexDigest, "0123456789abcdef") != "" {
		return "", fmt.Errorf("artifact %q: %w", ref, ErrBadRef)
	}
	return filepath.Join(c.Dir, "sha256", hexDigest), nil
}

// Put stores the bytes read from r and returns their reference. If want is
// not empty, the bytes must hash to it or nothing is stored. Writing is
// atomic (temp file, fsync, rename): a crash leaves either the whole
// artifact or none.
func (c Cache) Put(r io.Reader, want string) (string, error) {
	if want != "" {
		if _, err := c.Path(want); err != nil {
			return "", fmt.Errorf("store artifact: %w", err)
		}
	}
	dir := filepath.Join(c.Dir, "sha256")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	ref := Prefix + hex.EncodeToString(h.Sum(nil))
	if want != "" && want != ref {
		return "", fmt.Errorf("store artifact: got %s, announced %s: %w", ref, want, ErrDigestMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	path, _ := c.Path(ref)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("store artifact: %w", err)
	}
	return ref, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
