package wasm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/driver"
)

var (
	// sensorWasm is the example module, built from examples/wasm/sensor by
	// TestMain.
	sensorWasm string
	// sharedCacheDir is a compilation cache shared by tests that do not care
	// about caching, so only the first of them compiles the module cold.
	sharedCacheDir string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "atoll-wasm-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "create temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	sensorWasm = filepath.Join(dir, "sensor.wasm")
	if err := buildSensor(sensorWasm); err != nil {
		fmt.Fprintf(os.Stderr, "build example module: %v\n", err)
		return 1
	}
	sharedCacheDir = filepath.Join(dir, "cache")
	return m.Run()
}

// buildSensor compiles examples/wasm/sensor for wasip1 into out.
func buildSensor(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("find go tool: %w", err)
	}
	src, err := filepath.Abs(filepath.Join("..", "..", "..", "examples", "wasm", "sensor"))
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", src, err, b)
	}
	return nil
}

// newDriver returns a Driver on the shared compilation cache, closed when the
// test ends.
func newDriver(t testing.TB) *Driver {
	t.Helper()
	return newDriverIn(t, sharedCacheDir)
}

func newDriverIn(t testing.TB, cacheDir string) *Driver {
	t.Helper()
	d, err := New(Config{CacheDir: cacheDir})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// sensorSpec is a spec for the example module with the given environment,
// logging to a fresh file under t.TempDir.
func sensorSpec(t *testing.T, env map[string]string) driver.Spec {
	t.Helper()
	return driver.Spec{
		Name:    "sensor",
		WASM:    &driver.WASMConfig{ModulePath: sensorWasm, Env: env},
		LogPath: filepath.Join(t.TempDir(), "sensor.log"),
	}
}

func start(t *testing.T, d *Driver, spec driver.Spec) driver.Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return h
}

func wait(t *testing.T, d *Driver, h driver.Handle) driver.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return exit
}

// logContains returns a condition that holds once the file at path contains
// every one of want.
func logContains(path string, want ...string) func() error {
	return func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				return fmt.Errorf("log %s lacks %q; it holds:\n%s", path, w, b)
			}
		}
		return nil
	}
}

// wasmModule assembles a module with one exported function, _start, of type
// () -> () and the given body (locals declaration and instructions, without
// the final end). Every section must stay under 128 bytes.
func wasmModule(body ...byte) []byte {
	section := func(id byte, content ...byte) []byte {
		return append([]byte{id, byte(len(content))}, content...)
	}
	fn := append(append([]byte{0x00}, body...), 0x0b) // no locals, body, end
	m := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	m = append(m, section(0x01, 0x01, 0x60, 0x00, 0x00)...) // type 0: () -> ()
	m = append(m, section(0x03, 0x01, 0x00)...)             // func 0 has type 0
	m = append(m, section(0x07, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00)...)
	m = append(m, section(0x0a, append([]byte{0x01, byte(len(fn))}, fn...)...)...)
	return m
}

// writeModule writes code to a file under t.TempDir and returns its path.
func writeModule(t *testing.T, name string, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, code, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
