package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/manifest"
)

// artifactUploader is the part of the agent client that takes artifacts.
type artifactUploader interface {
	PutArtifact(ctx context.Context, ref string, r io.Reader) error
}

// uploadArtifacts copies every WASM module a workload names by path into the
// agent's artifact cache and rewrites the reference to its digest, so the
// stored spec pins exact bytes, survives the file's removal, and a changed
// module shows as a changed workload. A relative path is relative to the
// manifest file that names it; readFile reads it (os.ReadFile, or an
// embedded file system's).
func uploadArtifacts(ctx context.Context, c artifactUploader, ws []manifest.Workload, readFile func(string) ([]byte, error)) error {
	for i := range ws {
		wasm := ws[i].Spec.WASM
		if wasm == nil || strings.HasPrefix(wasm.Module, artifact.Prefix) {
			continue
		}
		path := wasm.Module
		if !filepath.IsAbs(path) {
			file, _, _ := strings.Cut(ws[i].Source, "#")
			path = filepath.Join(filepath.Dir(file), path)
		}
		data, err := readFile(path)
		if err != nil {
			return fmt.Errorf("%s: spec.wasm.module: %w", ws[i].Source, err)
		}
		sum := sha256.Sum256(data)
		ref := artifact.Prefix + hex.EncodeToString(sum[:])
		if err := c.PutArtifact(ctx, ref, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("%s: spec.wasm.module: upload %s: %w", ws[i].Source, path, err)
		}
		wasm.Module = ref
	}
	return nil
}
