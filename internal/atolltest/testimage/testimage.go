// Package testimage gives tests a container engine and a tiny image made
// on the spot: a static build of testtask in a FROM-scratch image, loaded
// into the engine as a docker-archive, so nothing is pulled from anywhere.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
)

// Entrypoint is the image's entrypoint; its argument is a testtask
// behaviour (sleep, exit:N, http:PORT), by default sleep, or hup: print
// "ready", then "hup N" on the Nth SIGHUP, until SIGTERM.
const Entrypoint = "/task"

// Connect returns a client of the engine at $DOCKER_HOST or the default
// socket, or the reason there is none.
func Connect(ctx context.Context) (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, err
	}
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Require is what a test does when Connect failed: fail when $CI is set,
// so a CI machine without an engine cannot pass by skipping, else skip.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no container engine, and CI is set: %v", err)
	}
	t.Skipf("no container engine: %v", err)
}

// Image is a test image loaded into an engine.
type Image struct {
	// Ref is its name:tag, unique to this load.
	Ref string
}

// UniqueRef is name with a tag unique to this call: atoll-test/task:<random>.
func UniqueRef(name string) string { return name + ":" + strings.ToLower(rand.Text()[:12]) }

// Load builds the image and loads it into the engine under a unique
// reference. Remove it when done.
func Load(ctx context.Context, c *client.Client) (Image, error) {
	ref := UniqueRef("atoll-test/task")
	archive, err := Archive(ref, 0)
	if err != nil {
		return Image{}, err
	}
	res, err := c.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
	if err != nil {
		return Image{}, fmt.Errorf("load test image: %w", err)
	}
	out, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		return Image{}, fmt.Errorf("load test image: %w", err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return Image{}, fmt.Errorf("load test image: %s", out)
	}
	return Image{Ref: ref}, nil
}

// Remove removes the image from the engine.
func (im Image) Remove(ctx context.Context, c *client.Client) error {
	_, err := c.ImageRemove(ctx, im.Ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	return err
}

// Archive is a `docker save` archive of the test image named ref, which
// is not loaded anywhere. With filler > 0 its layer also holds /filler,
// that many random (incompressible) bytes, for transfers of a known size.
func Archive(ref string, filler int) ([]byte, error) {
	bin, err := buildTask()
	if err != nil {
		return nil, err
	}
	files := []layerFile{{strings.TrimPrefix(Entrypoint, "/"), 0o755, bin}}
	if filler > 0 {
		b := make([]byte, filler)
		_, _ = rand.Read(b)
		files = append(files, layerFile{"filler", 0o644, b})
	}
	return dockerArchive(ref, files)
}

// built caches the test task's binary: building it takes seconds.
var built struct {
	sync.Mutex
	bin []byte
}

// buildTask builds testdata/task statically and returns the binary.
func buildTask() ([]byte, error) {
	built.Lock()
	defer built.Unlock()
	if built.bin != nil {
		return built.bin, nil
	}
	bin, err := buildTaskOnce()
	if err == nil {
		built.bin = bin
	}
	return bin, err
}

func buildTaskOnce() ([]byte, error) {
	dir, err := os.MkdirTemp("", "atoll-testimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "task")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "atoll.dev/atoll/internal/atolltest/testimage/testdata/task")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build test task: %v\n%s", err, msg)
	}
	return os.ReadFile(out)
}

// layerFile is a file in the image's one layer.
type layerFile struct {
	name string
	mode int64
	data []byte
}

// dockerArchive is a `docker save` archive of a one-layer image holding
// files (the task binary at Entrypoint among them).
func dockerArchive(ref string, files []layerFile) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	for _, f := range files {
		if err := writeFile(lw, f.name, f.mode, f.data); err != nil {
			return nil, err
		}
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	diffID := sha256.Sum256(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{Entrypoint}, "Cmd": []string{"sleep"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return nil, err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{ref}, "Layers": []string{"layer/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {"layer/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := writeFile(aw, f.name, 0o644, f.data); err != nil {
			return nil, err
		}
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return archive.Bytes(), nil
}

func writeFile(w *tar.Writer, name string, mode int64, data []byte) error {
	if err := w.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// Push writes the test image to a registry as ref (host:port/name:tag,
// over plain HTTP: tests run their registry on loopback), without any
// engine.
func Push(ctx context.Context, ref string) error {
	archive, err := Archive(ref, 0)
	if err != nil {
		return err
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil }, nil)
	if err != nil {
		return fmt.Errorf("push test image: %w", err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("push test image: %w", err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push test image %s: %w", ref, err)
	}
	return nil
}
