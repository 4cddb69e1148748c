package cli

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hub/api"
)

// tarOf is a tar archive of name → content.
func tarOf(t *testing.T, files ...[2]string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestImagePush_DockerArchive(t *testing.T) {
	h := &fakeHub{}
	env := hubEnv(serveHub(t, h))
	archive := tarOf(t, [2]string{"manifest.json", `[{"Config":"c.json","RepoTags":["plant/app:1","plant/app:latest"],"Layers":["l.tar"]}]`},
		[2]string{"c.json", "{}"})
	path := writeFile(t, t.TempDir(), "app.tar", archive)
	code, out, errOut := atoll(t, env, "image", "push", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	sum := sha256.Sum256([]byte(archive))
	ref := "sha256:" + hex.EncodeToString(sum[:])
	want := "image plant/app:1 pushed (" + ref + ", 3.0 MiB)\nimage plant/app:latest pushed (" + ref + ", 3.0 MiB)\n"
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if got := h.artifacts; !slices.Equal(got, []string{ref + " " + strconv.Itoa(len(archive))}) {
		t.Errorf("uploaded %q", got)
	}
	if got := h.Requests(); !slices.Equal(got, []string{"PUT /v1/artifacts/" + ref, "POST /v1/images"}) {
		t.Errorf("requests = %q", got)
	}
}

func TestArchiveNames_OCI(t *testing.T) {
	idx := `{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/plant/app:2","org.opencontainers.image.ref.name":"2"}},` +
		`{"annotations":{"org.opencontainers.image.ref.name":"plant/tool:1"}},{"annotations":{}}]}`
	names, err := archiveNames(strings.NewReader(tarOf(t, [2]string{"oci-layout", "{}"}, [2]string{"./index.json", idx})))
	if err != nil || !slices.Equal(names, []string{"docker.io/plant/app:2", "plant/tool:1"}) {
		t.Errorf("names = %q, %v", names, err)
	}
}

func TestImagePush_Errors(t *testing.T) {
	h := &fakeHub{}
	env := hubEnv(serveHub(t, h))
	dir := t.TempDir()
	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "absent.tar"), "error: image push: open " + filepath.Join(dir, "absent.tar") + ": no such file or directory\n"},
		{"not a tar", writeFile(t, dir, "text.tar", strings.Repeat("not a tar archive ", 40)),
			"error: image push: " + filepath.Join(dir, "text.tar") + ": not a tar archive (an image archive is what docker save IMAGE -o FILE.tar writes): "},
		{"no manifest", writeFile(t, dir, "plain.tar", tarOf(t, [2]string{"hello.txt", "hi"})),
			"error: image push: " + filepath.Join(dir, "plain.tar") + ": no manifest.json or index.json: not an image archive (docker save IMAGE -o FILE.tar writes one)\n"},
		{"no names", writeFile(t, dir, "untagged.tar", tarOf(t, [2]string{"manifest.json", `[{"Config":"c.json","RepoTags":null}]`})),
			"error: image push: " + filepath.Join(dir, "untagged.tar") + ": the archive names no image (tag it, then save it by name: docker save host/name:tag -o FILE.tar)\n"},
		{"bad manifest", writeFile(t, dir, "bad.tar", tarOf(t, [2]string{"manifest.json", `{`})),
			"error: image push: " + filepath.Join(dir, "bad.tar") + ": manifest.json: unexpected end of JSON input\n"},
	} {
		code, out, errOut := atoll(t, env, "image", "push", tt.path)
		if code == 0 || out != "" || !strings.HasPrefix(errOut, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want stderr starting %q", tt.name, code, out, errOut, tt.want)
		}
	}
	if got := h.Requests(); len(got) != 0 {
		t.Errorf("a bad archive reached the hub: %q", got)
	}
}

func TestGetImages_Table(t *testing.T) {
	h := &fakeHub{Images: []api.Image{
		{Name: "plant/app:1", Ref: "sha256:" + strings.Repeat("ab", 32), Size: 20 << 20, Nodes: []string{"pi-1", "pi-2"}},
		{Name: "plant/tool:3", Ref: "sha256:" + strings.Repeat("cd", 32), Size: 1536 << 10, Nodes: []string{}},
	}}
	env := hubEnv(serveHub(t, h))
	code, out, errOut := atoll(t, env, "get", "images")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "REF", "SIZE", "NODES"}
	checkAligned(t, lines, cols)
	want := [][]string{
		{"plant/app:1", "sha256:abababababab", "20.0 MiB", "pi-1,pi-2"},
		{"plant/tool:3", "sha256:cdcdcdcdcdcd", "1.5 MiB", "-"},
	}
	for i, w := range want {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, w) {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}
	_, out, _ = atoll(t, env, "get", "images", "-o", "wide")
	if !strings.Contains(out, h.Images[0].Ref+" ") {
		t.Errorf("wide table lacks the full reference:\n%s", out)
	}
}
