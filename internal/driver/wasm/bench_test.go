package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCompile_Cold compiles the example module with an empty
// compilation cache each time: an agent's first start of a module.
func BenchmarkCompile_Cold(b *testing.B) {
	code := readSensor(b)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		benchCompile(b, ctx, filepath.Join(dir, "cache"), code)
	}
}

// BenchmarkCompile_Cached compiles the example module with a fresh Driver on
// a warm cache directory each time: an agent restart.
func BenchmarkCompile_Cached(b *testing.B) {
	code := readSensor(b)
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "cache")
	benchCompile(b, ctx, dir, code) // warm the cache
	for b.Loop() {
		benchCompile(b, ctx, dir, code)
	}
}

// benchCompile opens a Driver on dir, compiles code as Start does and
// closes everything.
func benchCompile(b *testing.B, ctx context.Context, dir string, code []byte) {
	d, err := New(Config{CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	rt, _, err := d.compile(ctx, code, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := rt.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

func readSensor(b *testing.B) []byte {
	b.Helper()
	code, err := os.ReadFile(sensorWasm)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(code)))
	return code
}
