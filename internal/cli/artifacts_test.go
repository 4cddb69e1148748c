package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
)

const wasmYAML = `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: sensor
spec:
  runtime: wasm
  wasm:
    module: mods/sensor.wasm
`

func TestNodeApply_UploadsModuleRelativeToManifest(t *testing.T) {
	cache := t.TempDir()
	n := &localapitest.Node{Artifacts: artifact.Cache{Dir: cache}}
	dir := agentDir(t, n)
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "mods"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "mods"), "sensor.wasm", "\x00asm-bytes")
	manifestPath := writeFile(t, src, "sensor.yaml", wasmYAML)

	// Run from elsewhere: the module path is relative to the manifest.
	t.Chdir(t.TempDir())
	code, out, errOut := atoll(t, nil, "node", "apply", "-f", manifestPath, "--data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "workload/sensor created\n" {
		t.Errorf("output %q", out)
	}
	sum := sha256.Sum256([]byte("\x00asm-bytes"))
	ref := "sha256:" + hex.EncodeToString(sum[:])
	w, ok := n.Applied("sensor")
	if !ok || w.Spec.WASM.Module != ref {
		t.Fatalf("applied module %q, want %q", w.Spec.WASM.Module, ref)
	}
	if _, err := os.Stat(filepath.Join(cache, "sha256", hex.EncodeToString(sum[:]))); err != nil {
		t.Errorf("module not in the agent's cache: %v", err)
	}
}

func TestNodeApply_MissingModuleNamesField(t *testing.T) {
	n := &localapitest.Node{Artifacts: artifact.Cache{Dir: t.TempDir()}}
	dir := agentDir(t, n)
	manifestPath := writeFile(t, t.TempDir(), "sensor.yaml", wasmYAML)
	code, _, errOut := atoll(t, nil, "node", "apply", "-f", manifestPath, "--data", dir)
	if code != 1 || !strings.Contains(errOut, "sensor.yaml#1: spec.wasm.module: open ") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, c := range n.Calls() {
		if strings.HasPrefix(c, "Apply") {
			t.Errorf("applied despite the missing module: %v", n.Calls())
		}
	}
}
