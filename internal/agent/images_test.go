package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

func TestFetchWindow_Open(t *testing.T) {
	at := func(hm string) time.Time {
		tm, err := time.ParseInLocation("15:04", hm, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tt := range []struct {
		window string
		open   []string
		closed []string
	}{
		{"01:00-05:00", []string{"01:00", "03:30", "04:59"}, []string{"00:59", "05:00", "12:00"}},
		{"22:00-05:00", []string{"22:00", "23:59", "00:00", "04:59"}, []string{"05:00", "21:59", "12:00"}},
		{"03:00-03:00", []string{"00:00", "03:00", "23:59"}, nil},
	} {
		w, err := ParseFetchWindow(tt.window)
		if err != nil {
			t.Fatal(err)
		}
		if w.String() != tt.window {
			t.Errorf("String() = %q, want %q", w.String(), tt.window)
		}
		for _, hm := range tt.open {
			if !w.Open(at(hm)) {
				t.Errorf("%s: closed at %s", tt.window, hm)
			}
		}
		for _, hm := range tt.closed {
			if w.Open(at(hm)) {
				t.Errorf("%s: open at %s", tt.window, hm)
			}
		}
	}
	for _, bad := range []string{"", "01:00", "1-5", "01:00-24:00", "01:00/05:00"} {
		if _, err := ParseFetchWindow(bad); err == nil {
			t.Errorf("ParseFetchWindow(%q) succeeded", bad)
		}
	}
}

// TestMissingArtifacts_ImagesAndWindow: the node misses the archives of
// its container workloads' images as well as modules, modules first; an
// archive in the cache is not missing; outside the fetch window only the
// archives over 1 MiB wait.
func TestMissingArtifacts_ImagesAndWindow(t *testing.T) {
	ref := func(c byte) string { return artifact.Prefix + strings.Repeat(string(c), 64) }
	a := &Agent{cfg: Config{DataDir: t.TempDir()}}
	a.images = map[string]wire.ImageArtifact{
		"plant/big:1":   {Image: "plant/big:1", Ref: ref('b'), Size: 20 << 20},
		"plant/small:1": {Image: "plant/small:1", Ref: ref('c'), Size: 512 << 10},
		"plant/had:1":   {Image: "plant/had:1", Ref: ref('d'), Size: 30 << 20},
	}
	ctr := func(image string) manifest.Workload {
		return manifest.Workload{Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeContainer, Container: &manifest.ContainerSpec{Image: image}}}
	}
	a.effective = map[string]manifest.Workload{
		"big": ctr("plant/big:1"), "small": ctr("plant/small:1"), "had": ctr("plant/had:1"), "pulled": ctr("nginx:1"),
		"mod": {Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeWASM, WASM: &manifest.WASMSpec{Module: ref('a')}}},
	}
	path, _ := a.artifacts().Path(ref('d'))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("cached"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := hubNode{a}
	if got, want := h.MissingArtifacts(), []string{ref('a'), ref('c'), ref('b')}; !slices.Equal(got, want) {
		t.Errorf("missing = %q, want %q", got, want)
	}
	if got := a.cachedImages(); !slices.Equal(got, []string{ref('d')}) {
		t.Errorf("cached images = %q", got)
	}
	now := time.Now()
	closed := FetchWindow{From: time.Duration(now.Hour()+2) % 24 * time.Hour, To: time.Duration(now.Hour()+3) % 24 * time.Hour}
	a.window = &closed
	if got, want := h.MissingArtifacts(), []string{ref('a'), ref('c')}; !slices.Equal(got, want) {
		t.Errorf("outside the window, missing = %q, want %q", got, want)
	}
	if hold := a.fetchHold(); !strings.HasPrefix(hold, "image downloads wait for the fetch window ") {
		t.Errorf("hold = %q", hold)
	}
}
