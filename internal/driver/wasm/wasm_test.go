package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"

	"atoll.dev/atoll/internal/driver"
)

func TestName(t *testing.T) {
	if got := newDriver(t).Name(); got != "wasm" {
		t.Fatalf("Name() = %q, want wasm", got)
	}
}

func TestStart_OutputLandsInLogAndExitZero(t *testing.T) {
	d := newDriver(t)
	spec := sensorSpec(t, map[string]string{"SENSOR": "temp0", "INTERVAL": "10ms", "EXIT_AFTER_N": "3"})
	spec.WASM.Args = []string{"--flag", "value"}
	spec.MemoryLimit = 32 << 20 // as in examples/wasm/sensor.yaml
	// The parent directory does not exist yet, and earlier content is kept.
	spec.LogPath = filepath.Join(t.TempDir(), "logs", "nested", "sensor.log")
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec.LogPath, []byte("earlier line\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	h := start(t, d, spec)
	if h.Driver != "wasm" || h.Version != 1 {
		t.Fatalf("handle = %+v, want driver wasm version 1", h)
	}
	exit := wait(t, d, h)
	if exit.Code != 0 || exit.Err != nil || exit.Failed() {
		t.Fatalf("exit = %+v, want code 0", exit)
	}

	b, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.HasPrefix(log, "earlier line\n") {
		t.Errorf("log does not keep earlier content (not appended):\n%s", log)
	}
	readings := regexp.MustCompile(`(?m)^\S+ sensor=temp0 seq=(\d+) celsius=\d+\.\d\d$`).FindAllStringSubmatch(log, -1)
	if len(readings) != 3 || readings[2][1] != "3" {
		t.Errorf("log has %d readings, want seq 1..3:\n%s", len(readings), log)
	}
	// argv[0] is the workload name; stderr goes to the same file.
	if want := `argv ["sensor" "--flag" "value"]`; !strings.Contains(log, want) {
		t.Errorf("log lacks %s:\n%s", want, log)
	}
}

func TestStart_CreatesLogWithMode0640(t *testing.T) {
	d := newDriver(t)
	spec := sensorSpec(t, map[string]string{"INTERVAL": "10ms", "EXIT_AFTER_N": "1"})
	spec.LogPath = filepath.Join(t.TempDir(), "new", "dir", "sensor.log")
	h := start(t, d, spec)
	if exit := wait(t, d, h); exit.Code != 0 {
		t.Fatalf("exit = %+v, want code 0", exit)
	}
	st, err := os.Stat(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("log file mode = %v, want 0640", st.Mode().Perm())
	}
}

func TestWait_ExitCodePropagates(t *testing.T) {
	d := newDriver(t)
	h := start(t, d, sensorSpec(t, map[string]string{"INTERVAL": "5ms", "EXIT_AFTER_N": "2", "EXIT_CODE": "7"}))
	exit := wait(t, d, h)
	if exit.Code != 7 || exit.Err != nil || !exit.Failed() {
		t.Fatalf("exit = %+v, want code 7 without error", exit)
	}
}

func TestWait_TrapIsAnError(t *testing.T) {
	d := newDriver(t)
	spec := driver.Spec{
		Name:    "trapper",
		WASM:    &driver.WASMConfig{ModulePath: writeModule(t, "trap.wasm", wasmModule(0x00))}, // unreachable
		LogPath: filepath.Join(t.TempDir(), "trap.log"),
	}
	h := start(t, d, spec)
	exit := wait(t, d, h)
	if exit.Err == nil || !strings.Contains(exit.Err.Error(), "unreachable") {
		t.Fatalf("exit = %+v, want a trap error mentioning unreachable", exit)
	}
	if !exit.Failed() {
		t.Errorf("trap exit %+v does not count as failed", exit)
	}
}

func TestWait_ContextDone(t *testing.T) {
	d := newDriver(t)
	h := start(t, d, sensorSpec(t, map[string]string{"INTERVAL": "1h"}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Wait(ctx, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a done context = %v, want context.Canceled", err)
	}
	// The module is unaffected: it still runs.
	if err := d.Recover(context.Background(), h); err != nil {
		t.Fatalf("Recover after an abandoned Wait: %v", err)
	}
}

func TestStop_EndsSleepingModulePromptly(t *testing.T) {
	d := newDriver(t)
	spec := sensorSpec(t, map[string]string{"SENSOR": "sleepy", "INTERVAL": "1h"})
	h := start(t, d, spec)
	// Once the first reading is out the module sleeps for an hour in
	// poll_oneoff; Stop must cut that sleep short.
	atolltest.WaitFor(t, 10*time.Second, logContains(spec.LogPath, "sensor=sleepy seq=1 "))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx, h, time.Hour); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	exit := wait(t, d, h)
	if exit.Code != -1 || exit.Err != nil {
		t.Fatalf("exit after Stop = %+v, want code -1 without error", exit)
	}
	// Already gone: no error.
	if err := d.Stop(ctx, h, time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStop_EndsBusyLoop(t *testing.T) {
	d := newDriver(t)
	// (loop (br 0)): never calls the host, so only WithCloseOnContextDone
	// can end it.
	spec := driver.Spec{
		Name:    "spinner",
		WASM:    &driver.WASMConfig{ModulePath: writeModule(t, "spin.wasm", wasmModule(0x03, 0x40, 0x0c, 0x00, 0x0b))},
		LogPath: filepath.Join(t.TempDir(), "spin.log"),
	}
	h := start(t, d, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx, h, 0); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if exit := wait(t, d, h); exit.Code != -1 {
		t.Fatalf("exit after Stop = %+v, want code -1", exit)
	}
}

func TestStop_UnknownHandleIsNotAnError(t *testing.T) {
	d := newDriver(t)
	h := driver.Handle{Driver: "wasm", Version: 1, State: []byte(`{"id":"gone","sha256":"00"}`)}
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Fatalf("Stop of an unknown instance: %v", err)
	}
}

func TestStart_MemoryLimitTooSmall(t *testing.T) {
	d := newDriver(t)
	spec := sensorSpec(t, nil)
	spec.MemoryLimit = 128 << 10 // 2 pages; a Go module needs more to start
	_, err := d.Start(context.Background(), spec)
	if err == nil {
		t.Fatal("Start with a 128Ki memory limit succeeded, want an error")
	}
	for _, want := range []string{`start wasm workload "sensor"`, sensorWasm, "over limit of 2 pages"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	spec.MemoryLimit = 1000 // below one page
	if _, err := d.Start(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "below one wasm page") {
		t.Errorf("Start with a 1000 byte limit = %v, want a below-one-page error", err)
	}
}

func TestStart_MemoryLimitEnforcedAtRuntime(t *testing.T) {
	d := newDriver(t)
	// 64Mi of ballast does not fit in 32Mi: memory.grow fails and the Go
	// runtime dies with "out of memory".
	limited := sensorSpec(t, map[string]string{"BALLAST_MB": "64", "EXIT_AFTER_N": "1"})
	limited.MemoryLimit = 32 << 20
	h := start(t, d, limited)
	exit := wait(t, d, h)
	if exit.Code != 2 || exit.Err != nil {
		b, _ := os.ReadFile(limited.LogPath)
		t.Fatalf("exit with 64Mi ballast under a 32Mi limit = %+v, want code 2 (Go runtime fatal error); log:\n%s", exit, b)
	}
	if err := logContains(limited.LogPath, "fatal error: out of memory")(); err != nil {
		t.Fatal(err)
	}

	// The same module on the same compilation cache, without a limit, is
	// fine: the limit belongs to the instance.
	free := sensorSpec(t, map[string]string{"BALLAST_MB": "64", "EXIT_AFTER_N": "1"})
	h = start(t, d, free)
	if exit := wait(t, d, h); exit.Code != 0 {
		b, _ := os.ReadFile(free.LogPath)
		t.Fatalf("exit without a limit = %+v, want 0; log:\n%s", exit, b)
	}
}

func TestStart_CompileErrorNamesPath(t *testing.T) {
	d := newDriver(t)
	path := writeModule(t, "junk.wasm", []byte("this is not wasm"))
	spec := driver.Spec{Name: "junk", WASM: &driver.WASMConfig{ModulePath: path}, LogPath: filepath.Join(t.TempDir(), "junk.log")}
	_, err := d.Start(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "compile module "+path) {
		t.Fatalf("Start of a junk module = %v, want a compile error naming %s", err, path)
	}
	if _, statErr := os.Stat(spec.LogPath); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("log file created for a module that never ran (stat: %v)", statErr)
	}
}

func TestStart_BadSpecs(t *testing.T) {
	d := newDriver(t)
	logPath := filepath.Join(t.TempDir(), "x.log")
	noStart := writeModule(t, "nostart.wasm", []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00})
	for name, tc := range map[string]struct {
		spec driver.Spec
		want string
	}{
		"no wasm config": {driver.Spec{Name: "a", LogPath: logPath}, "no wasm config"},
		"empty module":   {driver.Spec{Name: "a", WASM: &driver.WASMConfig{}, LogPath: logPath}, "module path is empty"},
		"missing file":   {driver.Spec{Name: "a", WASM: &driver.WASMConfig{ModulePath: "/nonexistent/x.wasm"}, LogPath: logPath}, "/nonexistent/x.wasm"},
		"no log path":    {driver.Spec{Name: "a", WASM: &driver.WASMConfig{ModulePath: sensorWasm}}, "log path is empty"},
		"no _start":      {driver.Spec{Name: "a", WASM: &driver.WASMConfig{ModulePath: noStart}, LogPath: logPath}, "exports no _start"},
		"negative limit": {driver.Spec{Name: "a", WASM: &driver.WASMConfig{ModulePath: sensorWasm}, LogPath: logPath, MemoryLimit: -1}, "negative"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := d.Start(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	d := newDriver(t)
	h := start(t, d, sensorSpec(t, map[string]string{"INTERVAL": "1h"}))

	var st state
	if err := json.Unmarshal(h.State, &st); err != nil {
		t.Fatalf("decode handle state: %v", err)
	}
	if st.ID == "" || len(st.SHA256) != 64 {
		t.Fatalf("handle state %s lacks an instance id or sha256", h.State)
	}

	// Same process, same Driver: the instance is there.
	if err := d.Recover(context.Background(), h); err != nil {
		t.Fatalf("Recover on the starting Driver: %v", err)
	}

	// A fresh Driver stands for a restarted agent: the instance is gone.
	fresh := newDriver(t)
	if err := fresh.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("Recover on a fresh Driver = %v, want ErrNotRunning", err)
	}
	if _, err := fresh.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("Inspect on a fresh Driver = %v, want ErrNotRunning", err)
	}

	// After it ends, the starting Driver does not run it either.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx, h, 0); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := d.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("Recover after Stop = %v, want ErrNotRunning", err)
	}

	// Corrupt state cannot be running here either; another driver's handle
	// is a caller bug, not ErrNotRunning.
	bad := driver.Handle{Driver: "wasm", Version: 1, State: []byte("{")}
	if err := d.Recover(context.Background(), bad); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("Recover of corrupt state = %v, want ErrNotRunning", err)
	}
	other := driver.Handle{Driver: "exec", Version: 1, State: h.State}
	if err := d.Recover(context.Background(), other); err == nil || errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("Recover of an exec handle = %v, want a non-ErrNotRunning error", err)
	}
}

func TestInspect(t *testing.T) {
	d := newDriver(t)
	spec := sensorSpec(t, map[string]string{"INTERVAL": "1h"})
	spec.MemoryLimit = 64 << 20
	spec.MilliCPU = 250
	before := time.Now()
	h := start(t, d, spec)

	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if info.PID != 0 {
		t.Errorf("PID = %d, want 0", info.PID)
	}
	if info.StartedAt.Before(before) || info.StartedAt.After(time.Now()) {
		t.Errorf("StartedAt = %v, want between %v and now", info.StartedAt, before)
	}
	want := "memory 64Mi enforced by wazero (1024 pages); cpu 250m declared but NOT enforced for wasm"
	if info.Limits != want {
		t.Errorf("Limits = %q, want %q", info.Limits, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx, h, 0); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := d.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("Inspect after Stop = %v, want ErrNotRunning", err)
	}
}

func TestCompilationCache_WrittenToDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	d := newDriverIn(t, dir)
	h := start(t, d, sensorSpec(t, map[string]string{"INTERVAL": "1ms", "EXIT_AFTER_N": "1"}))
	if exit := wait(t, d, h); exit.Code != 0 {
		t.Fatalf("exit = %+v, want 0", exit)
	}
	if n := countFiles(t, dir); n == 0 {
		t.Fatalf("compilation cache %s is empty after a compile", dir)
	}

	// A second Driver on the same directory (an agent restart) runs the
	// module from the cache without adding to it.
	before := countFiles(t, dir)
	d2 := newDriverIn(t, dir)
	h = start(t, d2, sensorSpec(t, map[string]string{"INTERVAL": "1ms", "EXIT_AFTER_N": "1"}))
	if exit := wait(t, d2, h); exit.Code != 0 {
		t.Fatalf("exit on the second Driver = %+v, want 0", exit)
	}
	if after := countFiles(t, dir); after != before {
		t.Errorf("cache grew from %d to %d files on a cached compile", before, after)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return n
}

func TestClose_StopsModulesAndRefusesStarts(t *testing.T) {
	d, err := New(Config{CacheDir: sharedCacheDir})
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, d, sensorSpec(t, map[string]string{"INTERVAL": "1h"}))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if exit := wait(t, d, h); exit.Code != -1 {
		t.Errorf("exit after Close = %+v, want code -1", exit)
	}
	if _, err := d.Start(ctx, sensorSpec(t, nil)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Start after Close = %v, want a closed error", err)
	}
}
