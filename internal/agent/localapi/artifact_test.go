package localapi_test

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

func TestPutArtifact(t *testing.T) {
	dir := t.TempDir()
	n := &localapitest.Node{Artifacts: artifact.Cache{Dir: dir}}
	sock := serve(t, n)
	body := "module bytes"
	sum := sha256.Sum256([]byte(body))
	ref := "sha256:" + hex.EncodeToString(sum[:])

	if code, resp, _ := call(t, sock, "PUT", "/v1/artifacts/"+ref, body); code != 204 {
		t.Fatalf("put: %d %s", code, resp)
	}
	got, err := os.ReadFile(filepath.Join(dir, "sha256", hex.EncodeToString(sum[:])))
	if err != nil || string(got) != body {
		t.Fatalf("stored %q, %v", got, err)
	}

	wrong := "sha256:" + strings.Repeat("0", 64)
	code, resp, _ := call(t, sock, "PUT", "/v1/artifacts/"+wrong, body)
	if code != 400 || !strings.Contains(string(resp), "digest mismatch") {
		t.Errorf("mismatch: %d %s", code, resp)
	}
	code, resp, _ = call(t, sock, "PUT", "/v1/artifacts/md5:abc", body)
	if code != 400 || !strings.Contains(string(resp), "not a sha256") {
		t.Errorf("bad ref: %d %s", code, resp)
	}
	if code, _, _ := call(t, sock, "GET", "/v1/artifacts/"+ref, ""); code != 405 {
		t.Errorf("GET: %d, want 405", code)
	}
}
