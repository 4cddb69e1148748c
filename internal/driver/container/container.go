// Package container is the driver for OCI containers, run by the node's
// Docker Engine through its API. The engine never restarts a container
// (restart policy "no"): the supervisor does, by starting a new one. A
// container outlives the agent; a new agent adopts it by the container ID
// in its handle. The container's output is copied from the engine's log
// stream into the workload's log file by the agent, and resumed after the
// last copied line when a new agent adopts the container. An image the
// engine lacks is loaded from the archive the agent fetched from the hub's
// image store, or else pulled from its registry by the engine.
package container

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/driver"
)

// driverName is the driver's name, in Handle.Driver.
const driverName = "container"

// DefaultHost is the engine address used when neither Config.Host nor
// DOCKER_HOST is set.
const DefaultHost = "unix:///var/run/docker.sock"

// Config configures a Driver.
type Config struct {
	// Host is the engine's address, e.g. unix:///var/run/docker.sock.
	// Default: $DOCKER_HOST, else DefaultHost.
	Host string
	// Node is the node's name, part of every container's name and labels.
	Node string
	// Owner identifies the agent (its data directory); it is a label on
	// every container, and a container of the same name with another owner
	// is never touched.
	Owner string
	// StateDir holds the log cursors of running containers and the marks
	// of the image archives loaded. Required.
	StateDir string
	// PullTimeout bounds a pull from a registry; default
	// DefaultPullTimeout.
	PullTimeout time.Duration
}

// Driver runs workloads as containers. It is safe for concurrent use.
type Driver struct {
	cfg Config
	api *client.Client

	mu      sync.Mutex
	follows map[string]*follower // by container ID, while its output is copied
}

var _ driver.Driver = (*Driver)(nil)

// New connects to the engine and checks that it answers. The error says
// which engine could not be reached and why.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Host == "" {
		cfg.Host = os.Getenv("DOCKER_HOST")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.StateDir == "" {
		return nil, errors.New("container driver: a state directory is required")
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("container driver: %w", err)
	}
	api, err := client.New(client.WithHost(cfg.Host))
	if err != nil {
		return nil, fmt.Errorf("no Docker engine at %s: %w", cfg.Host, err)
	}
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		api.Close()
		return nil, fmt.Errorf("no Docker engine at %s: %w", cfg.Host, err)
	}
	return &Driver{cfg: cfg, api: api, follows: make(map[string]*follower)}, nil
}

// Close stops copying output (containers keep running) and closes the
// connection to the engine.
func (d *Driver) Close() error {
	d.mu.Lock()
	fs := d.follows
	d.follows = make(map[string]*follower)
	d.mu.Unlock()
	for _, f := range fs {
		f.cancel()
		<-f.done
	}
	return d.api.Close()
}

// Name returns "container".
func (d *Driver) Name() string { return driverName }

// Start creates and starts a container for spec, loading or pulling its
// image first when the engine lacks it. A leftover container of the same workload and agent (one that
// exited, or one an agent started but died before recording) is removed
// first. ctx bounds only the launch.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	h, err := d.start(ctx, spec)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	return h, nil
}

func (d *Driver) start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	switch {
	case ctx.Err() != nil:
		return driver.Handle{}, ctx.Err()
	case spec.Name == "":
		return driver.Handle{}, errors.New("workload has no name")
	case spec.Container == nil || spec.Container.Image == "":
		return driver.Handle{}, errors.New("no image")
	case spec.MemoryLimit < 0 || spec.MilliCPU < 0:
		return driver.Handle{}, fmt.Errorf("negative limit: memory %d, cpu %dm", spec.MemoryLimit, spec.MilliCPU)
	}
	if err := d.ensureImage(ctx, spec.Container.Image, spec.Container.Archive); err != nil {
		return driver.Handle{}, err
	}
	opts, err := d.createOptions(spec)
	if err != nil {
		return driver.Handle{}, err
	}
	if err := d.removeLeftover(ctx, opts.Name); err != nil {
		return driver.Handle{}, err
	}
	out, err := openLog(spec.LogPath)
	if err != nil {
		return driver.Handle{}, err
	}
	created, err := d.api.ContainerCreate(ctx, opts)
	if err != nil {
		out.Close()
		return driver.Handle{}, fmt.Errorf("create container %s: %w", opts.Name, err)
	}
	id := created.ID
	if _, err := d.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		out.Close()
		d.remove(ctx, id)
		return driver.Handle{}, fmt.Errorf("start container %s: %w", opts.Name, err)
	}
	// The engine only streams the output of a started container; "since
	// the beginning" misses nothing that came before this call.
	f := d.follow(id, out, "")
	d.mu.Lock()
	d.follows[id] = f
	d.mu.Unlock()
	st := handleState{Name: spec.Name, ID: id, LogPath: spec.LogPath, Limits: limitsText(spec.MemoryLimit, spec.MilliCPU)}
	return st.handle()
}

// removeLeftover removes the container called name if this agent owns it.
// The supervisor starts a workload only when its previous container is not
// running under its handle, so such a container is a leftover.
func (d *Driver) removeLeftover(ctx context.Context, name string) error {
	old, err := d.api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", name, err)
	}
	if owner := old.Container.Config.Labels[LabelOwner]; owner != d.cfg.Owner {
		return fmt.Errorf("container name %s is taken by a container (%s) not of this agent (owner %q)", name, shortID(old.Container.ID), owner)
	}
	if _, err := d.api.ContainerRemove(ctx, old.Container.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove leftover container %s: %w", name, err)
	}
	_ = os.Remove(d.cursorPath(old.Container.ID))
	return nil
}

// Recover reattaches to a container started by an earlier agent: it must
// still exist and run. Otherwise the error wraps driver.ErrNotRunning; a
// container that exited meanwhile has the rest of its output copied to the
// log and is removed. Recover never starts anything.
func (d *Driver) Recover(ctx context.Context, h driver.Handle) error {
	st, err := decodeHandle(h)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if _, err := d.attach(ctx, st); err != nil {
		return fmt.Errorf("recover %s: %w", st.Name, err)
	}
	return nil
}

// inspect returns the engine's view of the handle's container; the error
// wraps driver.ErrNotRunning when it no longer exists.
func (d *Driver) inspect(ctx context.Context, st handleState) (container.InspectResponse, error) {
	res, err := d.api.ContainerInspect(ctx, st.ID, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return res.Container, fmt.Errorf("container %s does not exist: %w", shortID(st.ID), driver.ErrNotRunning)
	}
	if err != nil {
		return res.Container, fmt.Errorf("inspect container %s: %w", shortID(st.ID), err)
	}
	if res.Container.State == nil {
		return res.Container, fmt.Errorf("inspect container %s: no state", shortID(st.ID))
	}
	return res.Container, nil
}

// attach returns the follower of a running container, starting one that
// resumes after the stored cursor if this Driver has none.
func (d *Driver) attach(ctx context.Context, st handleState) (*follower, error) {
	d.mu.Lock()
	f := d.follows[st.ID]
	d.mu.Unlock()
	if f != nil {
		return f, nil
	}
	c, err := d.inspect(ctx, st)
	if err != nil {
		return nil, err
	}
	out, err := openLog(st.LogPath)
	if err != nil {
		return nil, err
	}
	if !c.State.Running {
		// It ended while no agent watched: keep its last words, then clear it away.
		lost := ""
		if err := d.copyLogs(ctx, st.ID, out, d.readCursor(st.ID), false); err != nil {
			lost = fmt.Sprintf("; its last output was not copied (%v)", err)
		}
		out.Close()
		d.remove(ctx, st.ID)
		return nil, fmt.Errorf("container %s has exited (code %d)%s: %w", shortID(st.ID), c.State.ExitCode, lost, driver.ErrNotRunning)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.follows[st.ID]; f != nil {
		out.Close()
		return f, nil
	}
	f = d.follow(st.ID, out, d.readCursor(st.ID))
	d.follows[st.ID] = f
	return f, nil
}

// remove removes a container that has stopped, and its cursor.
func (d *Driver) remove(ctx context.Context, id string) {
	_, _ = d.api.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
	_ = os.Remove(d.cursorPath(id))
}

// drain waits until f has copied the rest of a stopped container's output.
func (d *Driver) drain(ctx context.Context, id string, f *follower) error {
	select {
	case <-f.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	if d.follows[id] == f {
		delete(d.follows, id)
	}
	d.mu.Unlock()
	return nil
}

// Wait blocks until the container stops or ctx is done, then copies the
// rest of its output, removes it and reports its exit status as the engine
// saw it (128+N after signal N; Err says when the kernel killed it for
// memory). A handle this Driver has not started or recovered is recovered
// first.
func (d *Driver) Wait(ctx context.Context, h driver.Handle) (driver.Exit, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Exit{}, fmt.Errorf("wait: %w", err)
	}
	f, err := d.attach(ctx, st)
	if err != nil {
		return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, err)
	}
	res := d.api.ContainerWait(ctx, st.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var exit driver.Exit
	select {
	case r := <-res.Result:
		exit.Code = int(r.StatusCode)
		if r.Error != nil && r.Error.Message != "" {
			exit.Err = errors.New(r.Error.Message)
		}
	case err := <-res.Error:
		if ctx.Err() != nil {
			return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, ctx.Err())
		}
		if !cerrdefs.IsNotFound(err) {
			return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, err)
		}
		// Removed under us (by Stop): the status is gone with it.
		exit.Code = -1
	}
	if c, err := d.inspect(ctx, st); err == nil && c.State.OOMKilled {
		exit.Err = fmt.Errorf("killed by the kernel: out of memory (%s)", st.Limits)
	}
	if err := d.drain(ctx, st.ID, f); err != nil {
		return driver.Exit{}, fmt.Errorf("wait %s: %w", st.Name, err)
	}
	d.remove(ctx, st.ID)
	return exit, nil
}

// Stop has the engine stop the container (SIGTERM, SIGKILL after grace,
// rounded up to whole seconds; at once if grace <= 0), copies the rest of
// its output and removes it. A container already gone is not an error.
func (d *Driver) Stop(ctx context.Context, h driver.Handle, grace time.Duration) error {
	st, err := decodeHandle(h)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	f, err := d.attach(ctx, st)
	if errors.Is(err, driver.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", st.Name, err)
	}
	timeout := int(math.Ceil(max(grace, 0).Seconds()))
	if _, err := d.api.ContainerStop(ctx, st.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", st.Name, err)
	}
	if err := d.drain(ctx, st.ID, f); err != nil {
		return fmt.Errorf("stop %s: %w", st.Name, err)
	}
	if _, err := d.api.ContainerRemove(ctx, st.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: remove: %w", st.Name, err)
	}
	_ = os.Remove(d.cursorPath(st.ID))
	return nil
}

// Inspect describes a running container; for one that is gone or stopped
// the error wraps driver.ErrNotRunning.
func (d *Driver) Inspect(ctx context.Context, h driver.Handle) (driver.Info, error) {
	st, err := decodeHandle(h)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect: %w", err)
	}
	c, err := d.inspect(ctx, st)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect %s: %w", st.Name, err)
	}
	if !c.State.Running {
		return driver.Info{}, fmt.Errorf("inspect %s: container %s is %s: %w", st.Name, shortID(st.ID), c.State.Status, driver.ErrNotRunning)
	}
	started, err := time.Parse(time.RFC3339Nano, c.State.StartedAt)
	if err != nil {
		return driver.Info{}, fmt.Errorf("inspect %s: start time %q: %w", st.Name, c.State.StartedAt, err)
	}
	return driver.Info{PID: c.State.Pid, StartedAt: started, Limits: st.Limits}, nil
}
