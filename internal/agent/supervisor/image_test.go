package supervisor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/manifest"
)

// archiveDriver is a container driver that records the archive each start
// was given and keeps the workload "running" until stopped.
type archiveDriver struct {
	mu       sync.Mutex
	archives []string
	stopped  chan struct{}
}

func (d *archiveDriver) Name() string { return "container" }
func (d *archiveDriver) Start(_ context.Context, s driver.Spec) (driver.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.archives = append(d.archives, s.Container.Archive)
	return driver.Handle{Driver: "container"}, nil
}
func (d *archiveDriver) Recover(context.Context, driver.Handle) error { return driver.ErrNotRunning }
func (d *archiveDriver) Wait(ctx context.Context, _ driver.Handle) (driver.Exit, error) {
	select {
	case <-d.stopped:
		return driver.Exit{}, nil
	case <-ctx.Done():
		return driver.Exit{}, ctx.Err()
	}
}
func (d *archiveDriver) Stop(context.Context, driver.Handle, time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.stopped:
	default:
		close(d.stopped)
	}
	return nil
}
func (d *archiveDriver) Inspect(context.Context, driver.Handle) (driver.Info, error) {
	return driver.Info{PID: 1, StartedAt: time.Now()}, nil
}

// TestSupervisor_WaitsForImageWithProgress: a container workload whose
// image archive is not in the cache is pending with the download's
// progress (and the fetch window's hold) as its reason, one "waiting"
// event however often the reason is refreshed, and starts with the
// archive once it is stored.
func TestSupervisor_WaitsForImageWithProgress(t *testing.T) {
	cache := artifact.Cache{Dir: t.TempDir()}
	drv := &archiveDriver{stopped: make(chan struct{})}
	var hold string
	var holdMu sync.Mutex
	h := newHarness(t, func(c *supervisor.Config) {
		c.Artifacts = cache
		c.Drivers[manifest.RuntimeContainer] = drv
		c.FetchHold = func() string { holdMu.Lock(); defer holdMu.Unlock(); return hold }
	})
	data := bytes.Repeat([]byte("layer"), 1<<18) // 1.25 MiB
	ref, err := artifact.Cache{Dir: t.TempDir()}.Put(bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	w := supervisor.Workload{Name: "app", Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeContainer,
		Container: &manifest.ContainerSpec{Image: "plant/app:1"}}, Image: &supervisor.Image{Ref: ref, Size: int64(len(data))}}
	h.sync(w)
	reason := func(want string) {
		t.Helper()
		h.waitState("app", supervisor.StatePending, func(st supervisor.Status) error {
			if st.Reason != want {
				return fmt.Errorf("reason %q, want %q", st.Reason, want)
			}
			return nil
		})
	}
	prefix := "waiting for image plant/app:1 (" + ref + "): "
	reason(prefix + "0.0 of 1.2 MiB")

	dl, err := cache.Resume(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Append(data[:len(data)/2], "half"); err != nil {
		t.Fatal(err)
	}
	holdMu.Lock()
	hold = "image downloads wait for the fetch window 01:00-05:00 (local time)"
	holdMu.Unlock()
	if err := h.sup.Retry(context.Background()); err != nil {
		t.Fatal(err)
	}
	reason(prefix + "0.6 of 1.2 MiB; image downloads wait for the fetch window 01:00-05:00 (local time)")
	if n := len(h.events("app", "waiting")); n != 1 {
		t.Errorf("%d waiting events, want 1", n)
	}

	if err := dl.Append(data[len(data)/2:], "all"); err != nil {
		t.Fatal(err)
	}
	if err := dl.Commit(); err != nil {
		t.Fatal(err)
	}
	dl.Close()
	if err := h.sup.Retry(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitState("app", supervisor.StateRunning, nil)
	path, _ := cache.Path(ref)
	drv.mu.Lock()
	defer drv.mu.Unlock()
	if len(drv.archives) != 1 || drv.archives[0] != path {
		t.Errorf("started with archives %q, want [%s]", drv.archives, path)
	}
	if _, err := os.Stat(filepath.Join(cache.Dir, "partial", strings.TrimPrefix(ref, artifact.Prefix))); err == nil {
		t.Error("the partial download is left")
	}
}
