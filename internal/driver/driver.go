// Package driver defines the interface every workload runtime implements.
// The supervisor drives workloads only through it and never knows which
// runtime is underneath.
//
// The interface is built for recovery: Start returns a Handle whose opaque
// State the agent persists before it reports the workload running, and
// Recover reattaches to a workload that outlived the agent without starting
// it again.
package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotRunning is returned by Recover when the workload behind a handle is
// gone (it exited, the machine rebooted, or the PID now belongs to another
// process). The caller starts the workload anew.
var ErrNotRunning = errors.New("workload not running")

// Spec is everything a driver needs to start one workload on this node.
// Exactly one of Exec, WASM and Container is set, matching the driver.
type Spec struct {
	// Name is the workload's name, unique on the node.
	Name      string
	Exec      *ExecConfig
	WASM      *WASMConfig
	Container *ContainerConfig
	// MemoryLimit in bytes; 0 means no limit.
	MemoryLimit int64
	// MilliCPU is the CPU limit in thousandths of a core; 0 means no limit.
	MilliCPU int64
	// LogPath is the file that receives the workload's stdout and stderr.
	// The driver opens it for appending and creates it if needed; rotation is
	// the caller's (copy-truncate), so drivers must write with O_APPEND.
	LogPath string
}

// ExecConfig is a plain process.
type ExecConfig struct {
	Command    []string
	Env        map[string]string
	WorkingDir string
}

// WASMConfig is a WASI preview 1 module.
type WASMConfig struct {
	// ModulePath is a local file holding the module's bytes.
	ModulePath string
	Args       []string
	Env        map[string]string
	// Mounts are host directories the module sees at Path (read-only
	// when ReadOnly); the module sees nothing else of the host's files.
	Mounts []Mount
}

// ContainerConfig is an OCI container run by a container engine.
type ContainerConfig struct {
	// Image is host/name:tag. When the engine does not have it, it is
	// loaded from Archive if set, else pulled from its registry.
	Image string
	// Archive is a local image archive (docker save, OCI layout tarball)
	// holding Image; empty when there is none.
	Archive string
	// Command replaces the image's entrypoint and Args its command; empty
	// keeps the image's.
	Command []string
	Args    []string
	Env     map[string]string
	Mounts  []Mount
	// Ports to publish; empty with HostNetwork.
	Ports       []Port
	HostNetwork bool
	// Devices are host device paths, made available at the same path.
	Devices    []string
	Privileged bool
	// User is "uid", "uid:gid" or a name; empty means the image's.
	User string
}

// Mount binds HostPath to Path inside a container.
type Mount struct {
	HostPath string
	Path     string
	ReadOnly bool
}

// Port publishes ContainerPort on the node's HostPort; Protocol is "tcp"
// or "udp".
type Port struct {
	ContainerPort int
	HostPort      int
	Protocol      string
}

// Handle identifies a started workload. The agent stores it verbatim and
// passes it back to Recover, Wait, Stop and Inspect.
type Handle struct {
	// Driver is the name of the driver that made the handle.
	Driver string `json:"driver"`
	// Version is the driver's encoding version of State.
	Version int `json:"version"`
	// State is opaque to everyone but the driver.
	State []byte `json:"state"`
}

// Exit describes how a workload ended.
type Exit struct {
	// Code is the exit status; -1 when it is unknown (a recovered process is
	// not the agent's child, so its status cannot be read) or when the
	// workload was killed by a signal. A container engine reports a
	// container killed by signal N as 128+N.
	Code int
	// Signal names the signal that killed the workload, if any.
	Signal string
	// Err is set when the driver itself failed (for example a WASM trap).
	Err error
}

// Failed reports whether the exit counts as a failure for restart policies.
func (e Exit) Failed() bool { return e.Code != 0 || e.Signal != "" || e.Err != nil }

// Info is what Inspect reports about a running workload.
type Info struct {
	// PID of the workload's main process; 0 for in-agent runtimes (WASM).
	PID int
	// StartedAt is when the workload started.
	StartedAt time.Time
	// Limits says plainly which limits are enforced and how, e.g.
	// "memory 64Mi, cpu 250m enforced by cgroup v1" or
	// "not enforced: no writable cgroup".
	Limits string
}

// Driver runs workloads of one runtime.
//
// Wait may be called once per started or recovered handle; the other methods
// may be called concurrently with it.
type Driver interface {
	// Name is the runtime name: "exec", "wasm" or "container".
	Name() string
	// Start launches the workload. The returned handle is valid even if the
	// workload exits immediately; Wait then reports the exit.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Recover reattaches to a workload started by an earlier agent. It returns
	// ErrNotRunning (possibly wrapped) if the workload is gone; it never starts
	// anything.
	Recover(ctx context.Context, h Handle) error
	// Wait blocks until the workload exits or ctx is done.
	Wait(ctx context.Context, h Handle) (Exit, error)
	// Stop asks the workload to stop, kills it after grace, and returns once it
	// is gone. Stopping a workload that is already gone is not an error.
	Stop(ctx context.Context, h Handle, grace time.Duration) error
	// Inspect describes a running workload.
	Inspect(ctx context.Context, h Handle) (Info, error)
}

// ErrBadHandle is wrapped by every error decoding a handle: another
// driver's, another encoding version's, or a state that does not parse or
// lacks what the driver needs.
var ErrBadHandle = errors.New("not a handle of this driver")

// NewHandle encodes a driver's state (JSON) as a handle.
func NewHandle(driverName string, version int, state any) (Handle, error) {
	data, err := json.Marshal(state)
	if err != nil {
		return Handle{}, fmt.Errorf("encode handle: %w", err)
	}
	return Handle{Driver: driverName, Version: version, State: data}, nil
}

// Decode reads h's state into state, if h was made by driverName with
// this version.
func (h Handle) Decode(driverName string, version int, state any) error {
	if h.Driver != driverName {
		return fmt.Errorf("decode handle: driver %q, want %q: %w", h.Driver, driverName, ErrBadHandle)
	}
	if h.Version != version {
		return fmt.Errorf("decode handle: version %d, want %d: %w", h.Version, version, ErrBadHandle)
	}
	if err := json.Unmarshal(h.State, state); err != nil {
		return fmt.Errorf("decode handle: %w: %w", ErrBadHandle, err)
	}
	return nil
}
