package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/testimage"
	"atoll.dev/atoll/internal/driver"
)

var (
	// engine is a client of the test engine; nil with engineErr set when
	// there is none.
	engine    *client.Client
	engineErr error
	// image is the test image, loaded once by TestMain.
	image testimage.Image
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	engine, engineErr = testimage.Connect(ctx)
	if engineErr == nil {
		defer engine.Close()
		if image, engineErr = testimage.Load(ctx, engine); engineErr != nil {
			fmt.Fprintln(os.Stderr, "container tests:", engineErr)
			return 1
		}
		defer func() {
			if err := image.Remove(context.Background(), engine); err != nil {
				fmt.Fprintln(os.Stderr, "container tests: remove test image:", err)
			}
		}()
	}
	return m.Run()
}

// newDriver returns a Driver owned by the test (its own owner label and
// state directory), closed when the test ends. It skips the test without
// an engine, or fails it when $CI is set.
func newDriver(t testing.TB) *Driver {
	t.Helper()
	testimage.Require(t, engineErr)
	return newDriverWith(t, Config{
		Node:     "test",
		Owner:    "atoll-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + fmt.Sprint(os.Getpid()),
		StateDir: t.TempDir(),
	})
}

// newDriverWith is a second Driver on cfg, as after an agent restart.
func newDriverWith(t testing.TB, cfg Config) *Driver {
	t.Helper()
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// newSpec is a container of the test image running args, logging to a
// fresh file.
func newSpec(t testing.TB, name string, args ...string) driver.Spec {
	return driver.Spec{
		Name:      name,
		Container: &driver.ContainerConfig{Image: image.Ref, Args: args},
		LogPath:   filepath.Join(t.TempDir(), "logs", name+".log"),
	}
}

// start starts spec and makes sure its container is removed when the test
// ends, whatever happens.
func start(t testing.TB, d *Driver, spec driver.Spec) (driver.Handle, handleState) {
	t.Helper()
	h, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := decodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, err := engine.ContainerRemove(context.Background(), st.ID, client.ContainerRemoveOptions{Force: true})
		if err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Errorf("cleanup: remove container %s: %v", shortID(st.ID), err)
		}
	})
	return h, st
}

// wait waits for the workload with a deadline.
func wait(t testing.TB, d *Driver, h driver.Handle) driver.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return exit
}

// readLog polls until the log contains want and returns it.
func readLog(t testing.TB, path, want string) string {
	t.Helper()
	return atolltest.WaitForFile(t, 10*time.Second, path, want)
}

// engineInspect is the engine's view of a container.
func engineInspect(t testing.TB, id string) (client.ContainerInspectResult, error) {
	t.Helper()
	return engine.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
}

// requireGone fails unless the container no longer exists.
func requireGone(t testing.TB, id string) {
	t.Helper()
	if _, err := engineInspect(t, id); err == nil || !strings.Contains(err.Error(), "No such container") {
		t.Errorf("container %s still exists (%v)", shortID(id), err)
	}
}

func truncate(path string) error { return os.Truncate(path, 0) }

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
