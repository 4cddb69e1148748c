package container

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/driver"
)

func TestDriver_Recover_Running(t *testing.T) {
	d1 := newDriver(t)
	spec := newSpec(t, "long", "sleep")
	h, st := start(t, d1, spec)
	readLog(t, spec.LogPath, "ready")
	before, err := engineInspect(t, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The first agent dies: its follower stops, the container runs on.
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := newDriverWith(t, d1.cfg)
	if err := d2.Recover(context.Background(), h); err != nil {
		t.Fatalf("recover: %v", err)
	}
	after, err := engineInspect(t, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Container.State.StartedAt != before.Container.State.StartedAt || after.Container.RestartCount != 0 {
		t.Errorf("container restarted: started %s -> %s, restarts %d",
			before.Container.State.StartedAt, after.Container.State.StartedAt, after.Container.RestartCount)
	}
	info, err := d2.Inspect(context.Background(), h)
	if err != nil || info.PID != before.Container.State.Pid {
		t.Fatalf("inspect after recover = %+v, %v; want pid %d", info, err, before.Container.State.Pid)
	}
	if got := info.StartedAt.Format(time.RFC3339Nano); got != before.Container.State.StartedAt {
		t.Errorf("StartedAt = %s, engine says %s", got, before.Container.State.StartedAt)
	}

	exits := make(chan driver.Exit, 1)
	errs := make(chan error, 1)
	go func() {
		exit, err := d2.Wait(context.Background(), h)
		exits <- exit
		errs <- err
	}()
	if _, err := engine.ContainerKill(context.Background(), st.ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	select {
	case exit := <-exits:
		if err := <-errs; err != nil {
			t.Fatalf("wait on recovered: %v", err)
		}
		// Unlike a recovered process, the engine still knows the status.
		if exit.Code != 137 {
			t.Errorf("recovered exit = %+v, want 137 (SIGKILL)", exit)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait on the recovered container did not return after it was killed")
	}
	// The output was not copied twice.
	if got := readLog(t, spec.LogPath, "ready"); got != "ready\n" {
		t.Errorf("log after recovery = %q, want one ready line", got)
	}
}

func TestDriver_Recover_Removed(t *testing.T) {
	d1 := newDriver(t)
	h, st := start(t, d1, newSpec(t, "removed", "sleep"))
	if _, err := engine.ContainerRemove(context.Background(), st.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	d2 := newDriverWith(t, d1.cfg)
	if err := d2.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("recover removed: %v, want ErrNotRunning", err)
	}
	if _, err := d2.Wait(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("wait on removed: %v, want ErrNotRunning", err)
	}
	if _, err := d2.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("inspect removed: %v, want ErrNotRunning", err)
	}
	if err := d2.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("stop removed: %v", err)
	}
}

// TestDriver_Recover_Exited: a container that ended while no agent ran is
// not running; its output up to the end reaches the log, and it is removed.
func TestDriver_Recover_Exited(t *testing.T) {
	d1 := newDriver(t)
	spec := newSpec(t, "ended", "sleep")
	h, st := start(t, d1, spec)
	readLog(t, spec.LogPath, "ready")
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	// Wipe the log: what the new agent copies shows in it.
	if err := truncate(spec.LogPath); err != nil {
		t.Fatal(err)
	}
	timeout := 5
	if _, err := engine.ContainerStop(context.Background(), st.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	d2 := newDriverWith(t, d1.cfg)
	if err := d2.Recover(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) || !strings.Contains(err.Error(), "exited (code 0)") {
		t.Errorf("recover exited: %v, want ErrNotRunning, exited (code 0)", err)
	}
	requireGone(t, st.ID)
	// The cursor says "ready" was copied already; nothing is copied twice.
	if got := readFile(t, spec.LogPath); got != "" {
		t.Errorf("log = %q, want nothing copied again", got)
	}
}

func TestDriver_Recover_BadHandle(t *testing.T) {
	d := newDriver(t)
	h, _ := start(t, d, newSpec(t, "valid", "sleep"))
	for name, bad := range map[string]driver.Handle{
		"other driver": {Driver: "exec", Version: 1, State: h.State},
		"new version":  {Driver: "container", Version: 2, State: h.State},
		"garbage":      {Driver: "container", Version: 1, State: []byte("{")},
		"empty":        {Driver: "container", Version: 1, State: []byte("{}")},
	} {
		err := d.Recover(context.Background(), bad)
		if err == nil || errors.Is(err, driver.ErrNotRunning) {
			t.Errorf("%s: err = %v, want a decoding error", name, err)
		}
	}
}

// TestDriver_Recover_ResumesLog: output written while no agent ran reaches
// the log once the container is recovered, and nothing is copied twice.
func TestDriver_Recover_ResumesLog(t *testing.T) {
	d1 := newDriver(t)
	spec := newSpec(t, "talker", "hup")
	h, st := start(t, d1, spec)
	hup := func(want string) {
		t.Helper()
		if _, err := engine.ContainerKill(context.Background(), st.ID, client.ContainerKillOptions{Signal: "HUP"}); err != nil {
			t.Fatal(err)
		}
		waitEngineLog(t, st.ID, want)
	}
	readLog(t, spec.LogPath, "ready")
	hup("hup 1")
	readLog(t, spec.LogPath, "hup 1")
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	// No agent: the engine keeps these.
	hup("hup 2")
	hup("hup 3")

	d2 := newDriverWith(t, d1.cfg)
	if err := d2.Recover(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	readLog(t, spec.LogPath, "hup 3")
	hup("hup 4")
	if got, want := readLog(t, spec.LogPath, "hup 4"), "ready\nhup 1\nhup 2\nhup 3\nhup 4\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}

// waitEngineLog waits until the engine has want in the container's output,
// so a signal's effect is known to have happened.
func waitEngineLog(t *testing.T, id, want string) {
	t.Helper()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		rc, err := engine.ContainerLogs(context.Background(), id, client.ContainerLogsOptions{ShowStdout: true})
		if err != nil {
			return err
		}
		defer rc.Close()
		var b strings.Builder
		if _, err := stdcopy.StdCopy(&b, &b, rc); err != nil {
			return err
		}
		if !strings.Contains(b.String(), want) {
			return fmt.Errorf("engine log lacks %q: %q", want, b.String())
		}
		return nil
	})
}
