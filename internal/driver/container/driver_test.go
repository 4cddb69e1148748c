package container

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/driver"
)

func TestDriver_Name(t *testing.T) {
	if got := (&Driver{}).Name(); got != "container" {
		t.Errorf("Name() = %q, want container", got)
	}
}

func TestDriver_Start_RunningAndLogged(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "sleeper", "sleep")
	h, st := start(t, d, spec)
	if h.Driver != "container" || h.Version != 1 {
		t.Errorf("handle = %s v%d, want container v1", h.Driver, h.Version)
	}
	if got := readLog(t, spec.LogPath, "ready"); got != "ready\n" {
		t.Errorf("log = %q, want the container's output without timestamps", got)
	}
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	c, err := engineInspect(t, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Container.State.Running || info.PID != c.Container.State.Pid || info.PID == 0 {
		t.Errorf("info = %+v, engine state = %+v", info, c.Container.State)
	}
	if info.Limits != "no limits declared" {
		t.Errorf("limits = %q", info.Limits)
	}
	labels := c.Container.Config.Labels
	if labels[LabelWorkload] != "sleeper" || labels[LabelNode] != "test" || labels[LabelOwner] != d.cfg.Owner {
		t.Errorf("labels = %v", labels)
	}
	if c.Container.Name != "/atoll-test-sleeper" || c.Container.HostConfig.RestartPolicy.Name != "no" {
		t.Errorf("name %q, restart policy %q; want /atoll-test-sleeper, no", c.Container.Name, c.Container.HostConfig.RestartPolicy.Name)
	}
	if !strings.Contains(strings.Join(c.Container.Config.Env, " "), "ATOLL_WORKLOAD=sleeper") {
		t.Errorf("env = %v", c.Container.Config.Env)
	}
}

func TestDriver_Start_Wait_ExitCode(t *testing.T) {
	d := newDriver(t)
	h, st := start(t, d, newSpec(t, "three", "exit:3"))
	exit := wait(t, d, h)
	if exit.Code != 3 || exit.Err != nil || !exit.Failed() {
		t.Errorf("exit = %+v, want code 3", exit)
	}
	// Waited for means gone: the next start gets a fresh container.
	requireGone(t, st.ID)
	if _, err := d.Inspect(context.Background(), h); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("inspect after exit: %v, want ErrNotRunning", err)
	}
}

func TestDriver_Stop_Grace(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "graceful", "sleep")
	h, st := start(t, d, spec)
	readLog(t, spec.LogPath, "ready")
	exits := make(chan driver.Exit, 1)
	go func() {
		exit, _ := d.Wait(context.Background(), h)
		exits <- exit
	}()
	begin := time.Now()
	// The task exits 0 on SIGTERM, well within the grace.
	if err := d.Stop(context.Background(), h, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 8*time.Second {
		t.Errorf("stop took %v; the container should have exited on SIGTERM", took)
	}
	requireGone(t, st.ID)
	select {
	case exit := <-exits:
		if exit.Code != 0 && exit.Code != -1 {
			t.Errorf("exit after SIGTERM = %+v, want 0 (or -1 if removed first)", exit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Stop")
	}
	// Stopping what is gone is not an error.
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestDriver_Start_Limits(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "limited", "sleep")
	spec.MemoryLimit, spec.MilliCPU = 64<<20, 250
	h, st := start(t, d, spec)
	c, err := engineInspect(t, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.Container.HostConfig
	if hc.Memory != 64<<20 || hc.NanoCPUs != 250_000_000 {
		t.Errorf("engine limits: memory %d, nanocpus %d; want %d, %d", hc.Memory, hc.NanoCPUs, 64<<20, 250_000_000)
	}
	info, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if want := "memory 64Mi, cpu 250m enforced by the Docker engine"; info.Limits != want {
		t.Errorf("limits = %q, want %q", info.Limits, want)
	}
}

func TestDriver_Start_BadImage(t *testing.T) {
	d := newDriver(t)
	for _, tt := range []struct{ image, want string }{
		// A registry on a closed loopback port: refused at once, and never
		// an outside address.
		{"127.0.0.1:1/atoll-test/absent:none", "image 127.0.0.1:1/atoll-test/absent:none is not on this node nor in the hub's image store (atoll image push), and pulling it from its registry failed: "},
		{"Not A Reference!", "image Not A Reference!:"},
	} {
		spec := newSpec(t, "bad", "sleep")
		spec.Container.Image = tt.image
		_, err := d.Start(context.Background(), spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "start bad: ") {
			t.Errorf("start with image %q: %v; want an error containing %q", tt.image, err, tt.want)
		}
	}
	if _, err := engine.ContainerInspect(context.Background(), "atoll-test-bad", client.ContainerInspectOptions{}); err == nil {
		t.Error("a container was left behind")
	}
}

func TestDriver_Start_RemovesLeftover(t *testing.T) {
	d := newDriver(t)
	_, old := start(t, d, newSpec(t, "again", "sleep"))
	// The agent died before recording the handle; the new start replaces
	// the old container instead of failing on its name or duplicating it.
	d2 := newDriverWith(t, d.cfg)
	_, st := start(t, d2, newSpec(t, "again", "sleep"))
	requireGone(t, old.ID)
	if st.ID == old.ID {
		t.Fatal("same container")
	}
	// Another agent's container of the same name is left alone.
	other := d.cfg
	other.Owner, other.StateDir = "someone-else", t.TempDir()
	d3 := newDriverWith(t, other)
	if _, err := d3.Start(context.Background(), newSpec(t, "again", "sleep")); err == nil || !strings.Contains(err.Error(), "not of this agent") {
		t.Errorf("start over another agent's container: %v", err)
	}
	if _, err := engineInspect(t, st.ID); err != nil {
		t.Errorf("the other agent's container is gone: %v", err)
	}
}

func TestDriver_Start_Spec(t *testing.T) {
	d := newDriver(t)
	spec := newSpec(t, "shaped", "sleep")
	dir := t.TempDir()
	spec.Container.Env = map[string]string{"B": "2", "A": "1"}
	spec.Container.User = "1234:5678"
	spec.Container.Mounts = []driver.Mount{{HostPath: dir, Path: "/data", ReadOnly: true}}
	spec.Container.Ports = []driver.Port{{ContainerPort: 8080, HostPort: atolltest.FreePort(t), Protocol: "tcp"}}
	_, st := start(t, d, spec)
	c, err := engineInspect(t, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := c.Container.Config, c.Container.HostConfig
	if env := strings.Join(cfg.Env, " "); !strings.Contains(env, "A=1 B=2") {
		t.Errorf("env = %v", cfg.Env)
	}
	if cfg.User != "1234:5678" || hc.Privileged || hc.NetworkMode == "host" {
		t.Errorf("user %q, privileged %v, network %q", cfg.User, hc.Privileged, hc.NetworkMode)
	}
	if len(hc.Mounts) != 1 || hc.Mounts[0].Source != dir || hc.Mounts[0].Target != "/data" || !hc.Mounts[0].ReadOnly {
		t.Errorf("mounts = %+v", hc.Mounts)
	}
	if len(hc.PortBindings) != 1 {
		t.Errorf("port bindings = %+v", hc.PortBindings)
	}
	for p, bs := range hc.PortBindings {
		if p.String() != "8080/tcp" || len(bs) != 1 || bs[0].HostPort != strconv.Itoa(spec.Container.Ports[0].HostPort) {
			t.Errorf("port binding %v -> %+v", p, bs)
		}
	}
}
